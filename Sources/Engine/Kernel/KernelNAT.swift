import Foundation
import HostCommand
import Netfilter
import Packet
public import Policy

/// The kernel datapath's nft table `inet vpm`: NAT by the decision's mark, the mark kept in
/// conntrack, refusals, and a guard against traffic no decision covered.
///
///     map vport        mark & 0xf000ffff -> virtual port (our range and every peer's)
///     maps service4/6  mark & 0x0fff0000 -> the address of a fleet host, by host slot
///                      (`ServiceRoutes`): a connection to a service address goes there
///     maps hosts4/6, endpoints4/6, networks4/6
///                      protocol . client address (. client port) . initial port -> the mark
///                      of a source-routed decision, kept by the engine (`KernelDecisions`)
///     chain first      nat, priority -110 (after conntrack, before the iptables nat chain
///                      that queues, `RuleSet.firstPacket`): one rule, `ct state new` and no
///                      decision's or refusal's mark yet `jump lookup` (a conntrack
///                      helper's RELATED connection is not vpm's);
///     chain lookup     a connection's first packet from another host whose source and
///                      initial port are in the map gets its decision here and is never
///                      queued, counted in the counter `decided`, and its conntrack entry
///                      sends no event (`ct event set 0x0`: the engine finds it in its dumps);
///                      everything else goes on to the engine
///     chain prerouting nat, priority -100: clients arriving at an initial port
///     chain output     nat, priority -100: local clients (local mode, cooperative peers);
///                      local programs' refused connections get a reset, and so does a
///                      local program dialing a virtual port directly over lo
///     chain input      nat, input hook, priority 100: refused connections (the refuse
///                      mark) get a reset or ICMP port unreachable; traffic to a virtual port
///                      whose conntrack entry carries no vpm mark is dropped (not from lo),
///                      and so is traffic to an initial port NAT did not translate; a virtual port's connection whose listening socket the
///                      engine did not bind (no `InstanceSocket.mark`) is refused
///     chain services   filter, output hook, priority 0 (after NAT), only with fleet
///                      service addresses: a local connection still bound for a service
///                      address (no AID decided it: a program outside vpm exec) is refused
///                      at once; no host holds the address, so it would wait for neighbour
///                      resolution to fail
///
/// Every chain but `services` is a NAT chain, and the kernel runs NAT chains for a connection's first
/// packet only (until NAT is set up for it): established packets meet no vpm rule at all, here
/// or in iptables (the NAT hooks themselves are the ones kernel NAT has too). Conntrack
/// carries each connection, so it never needs the engine again — not even while it restarts.
public struct KernelNAT: Sendable, Equatable {
    public static let table = "vpm"
    /// The counter of connections the `lookup` chain decided.
    static let decidedCounter = "decided"

    /// Connections the kernel decided by itself since the table was made (`lookup`'s
    /// counter, read over netlink in this thread's namespace), nil when it cannot be read (no
    /// table, no permission, no answer).
    static func decidedInKernel() -> UInt64? {
        try? NFTables.counter(.inet, table: table, name: decidedCounter).packets
    }

    public var script: String

    /// `table`: another name for a throwaway copy (`unavailableReason`).
    public init(_ configuration: Configuration, table: String = KernelNAT.table) {
        var ranges = [configuration.virtualPorts]
        for peer in configuration.cooperation.peers where !ranges.contains(peer.virtualPorts) {
            ranges.append(peer.virtualPorts)
        }
        let elements = ranges.flatMap { $0.map { "0x\(String(KernelMark.mapKey($0), radix: 16)) : \($0)" } }
        let tagged = "meta mark & 0x\(String(KernelMark.tagMask, radix: 16)) == 0x\(String(KernelMark.tag, radix: 16))"
        let key = "meta mark & 0x\(String(KernelMark.mapKeyMask, radix: 16)) map @vport"
        let ours = "\(configuration.virtualPorts.lowerBound)-\(configuration.virtualPorts.upperBound)"
        let refuse = "0x" + String(RuleSet.refuseMark, radix: 16)
        var nat: [String] = ["\(tagged) ct mark set meta mark"]
        var refusals: [String] = [], guards: [String] = [], localGuards: [String] = [], serviceMisses: [String] = []
        var undecidedServices: [String] = []
        for transport in [TransportProtocol.tcp, .udp] {
            let ports = configuration.initialPorts.filter { $0.transport == transport }.map { "\($0.port)" }
            guard !ports.isEmpty else { continue }
            let protocolMatch = "meta l4proto \(transport.name)"
            let initial = "\(protocolMatch) th dport { \(ports.joined(separator: ", ")) }"
            refusals.append("meta mark \(refuse) \(protocolMatch) " + (transport == .tcp ? "reject with tcp reset" : "reject"))
            // A service address's connection (mode 3) goes to the host its slot names;
            // the rule ends the chain, so the one below never sees it.
            let service = "meta mark & 0x\(String(KernelMark.serviceMask, radix: 16)) == 0x\(String(KernelMark.serviceTag, radix: 16))"
            let host = "meta mark & 0x\(String(KernelMark.hostKeyMask, radix: 16))"
            nat.append("\(service) \(initial) dnat ip to \(host) map @service4 : \(key)")
            nat.append("\(service) \(initial) dnat ip6 to \(host) map @service6 : \(key)")
            // A host slot the maps lack (they were flushed under a running engine): refused,
            // not sent to the service address itself (output only: no reject in prerouting).
            serviceMisses.append("\(service) \(initial) " + (transport == .tcp ? "reject with tcp reset" : "reject"))
            // A program outside vpm exec (no AID) dialing a service address, which no host
            // holds: refused at once, as other refusals are, not after neighbour resolution
            // of the address gives up (about 3 s). In a filter chain after NAT: a service
            // connection the engine decided has its host's address by then.
            let services = configuration.fleet?.services ?? []
            for (family, addresses) in [("ip", services.filter(\.isIPv4)), ("ip6", services.filter { !$0.isIPv4 })] where !addresses.isEmpty {
                undecidedServices.append("\(family) daddr { \(addresses.map { "\($0)" }.joined(separator: ", ")) } \(initial) "
                                         + (transport == .tcp ? "reject with tcp reset" : "reject"))
            }
            // Not mode 3: a service connection whose slot the maps lack must not go to the
            // service address itself (it is refused below, in output).
            let notService = "meta mark & 0x\(String(KernelMark.serviceMask, radix: 16)) != 0x\(String(KernelMark.serviceTag, radix: 16))"
            nat.append("\(tagged) \(notService) \(initial) dnat ip to ip daddr : \(key)")
            nat.append("\(tagged) \(notService) \(initial) dnat ip6 to ip6 daddr : \(key)")
            let reject = transport == .tcp ? "reject with tcp reset" : "reject"
            let undecided = "ct mark & 0x\(String(KernelMark.tagMask, radix: 16)) != 0x\(String(KernelMark.tag, radix: 16))"
            // A local program dialing a virtual port directly (127.0.0.1 or the host's own
            // address) is refused at once, on the way out: a local connection's NAT is set up
            // in output, so the input chain never sees it. Decided ones were DNATed above,
            // which ends the chain. From elsewhere the packet is dropped.
            localGuards.append("oifname \"lo\" \(protocolMatch) th dport \(ours) \(undecided) \(reject)")
            guards.append("iifname != \"lo\" \(protocolMatch) th dport \(ours) \(undecided) drop")
            guards.append("iifname != \"lo\" \(initial) ct status ! dnat drop")
            // Only a socket the engine bound for an instance (SO_MARK) receives a virtual
            // port's connections, not another program that bound the port after the instance
            // exited. The configuration's own instances listen on their ports themselves.
            let fixed = configuration.instances.filter { $0.transport == transport }.map { "\($0.virtualPort)" }
            let exceptFixed = fixed.isEmpty ? "" : " th dport != { \(fixed.joined(separator: ", ")) }"
            guards.append("\(protocolMatch) th dport \(ours)\(exceptFixed) socket mark != 0x\(String(InstanceSocket.mark, radix: 16)) \(reject)")
        }
        let input = refusals + guards
        let name = "inet \(table)"
        // A NAT chain: only a connection's first packet comes here (and again on the REPEAT
        // after the engine's verdict, when the lookups found nothing the first time).
        let undecidedConnection = "iifname != \"lo\" ct mark & 0x\(String(KernelMark.tagMask, radix: 16)) != 0x\(String(KernelMark.tag, radix: 16))"
        var decide: [String] = []
        // Source rules do not overlap: at most one map holds a packet's source.
        // A hit: the mark, no conntrack events for the connection (building and sending two
        // per connection cost the kernel about a tenth of its new-connection rate; the
        // engine's dumps find these connections), the count `vpm stats` shows, and the end of
        // the lookups (the maps after it would each test the packet again to no avail).
        let decided = "ct mark set meta mark ct event set 0x0 counter name \(Self.decidedCounter) return"
        for map in KernelDecisions.maps {
            decide.append("\(undecidedConnection) meta l4proto tcp tcp flags & (fin | syn | rst | ack) == syn meta mark set \(map.key) map @\(map.name) \(decided)")
            decide.append("\(undecidedConnection) meta l4proto udp meta mark set \(map.key) map @\(map.name) \(decided)")
        }
        var lines = [
            "# Generated by vpm for the kernel datapath (docs/datapaths.md). One transaction: the",
            "# chains are flushed and refilled, never deleted, so NAT keeps running for established",
            "# connections while an engine restarts.",
            "add table \(name)",
            "add map \(name) vport { type mark : inet_service; }",
            "add map \(name) service4 { type mark : ipv4_addr; }",
            "add map \(name) service6 { type mark : ipv6_addr; }",
            // Kept across a restart's refresh (an `add` of what exists changes nothing).
            "add counter \(name) \(Self.decidedCounter)",
        ] + KernelDecisions.maps.map { map in
            "add map \(name) \(map.name) { type \(map.type);\(map.interval ? " flags interval;" : "") }"
        } + [
            "add chain \(name) first { type nat hook prerouting priority -110; policy accept; }",
            "add chain \(name) lookup",
            "add chain \(name) prerouting { type nat hook prerouting priority -100; policy accept; }",
            "add chain \(name) output { type nat hook output priority -100; policy accept; }",
            "add chain \(name) input { type nat hook input priority 100; policy accept; }",
            // Only with fleet service addresses (its hook would meet every packet the host
            // sends); without them, one an earlier engine left goes.
            "add chain \(name) services { type filter hook output priority 0; policy accept; }",
            "flush chain \(name) services",
            "flush chain \(name) prerouting",
            "flush chain \(name) output",
            "flush chain \(name) input",
            "flush chain \(name) first",
            "flush chain \(name) lookup",
            "flush map \(name) vport",
            "flush map \(name) service4",
            "flush map \(name) service6",
        ]
        // The engine fills the decision maps once it runs (`KernelDecisions`): until then,
        // and after a restart until it has read its instances again, first packets are queued.
        lines += KernelDecisions.maps.map { "flush map \(name) \($0.name)" }
        // Elements in slices: one very long line is slow for nft's parser.
        var start = 0
        while start < elements.count {
            let end = min(start + 512, elements.count)
            lines.append("add element \(name) vport { \(elements[start..<end].joined(separator: ", ")) }")
            start = end
        }
        // Not on the REPEAT after the engine's verdict: its decision (or refusal) stands.
        let unmarked = "meta mark & 0x\(String(KernelMark.tagMask, radix: 16)) != 0x\(String(KernelMark.tag, radix: 16)) meta mark != \(refuse)"
        lines.append("add rule \(name) first ct state new \(unmarked) jump lookup")
        for rule in decide { lines.append("add rule \(name) lookup \(rule)") }
        for rule in nat {
            lines.append("add rule \(name) prerouting \(rule)")
            lines.append("add rule \(name) output \(rule)")
        }
        // After the service rules, whose dnat ends the chain when the slot is there.
        for rule in serviceMisses { lines.append("add rule \(name) output \(rule)") }
        for rule in undecidedServices { lines.append("add rule \(name) services \(rule)") }
        // Local programs' own refused connections (local mode, cooperative clients): their
        // connect() fails at once.
        if configuration.cooperation.local || !configuration.cooperation.peers.isEmpty {
            for rule in refusals { lines.append("add rule \(name) output \(rule)") }
        }
        for rule in localGuards { lines.append("add rule \(name) output \(rule)") }
        for rule in input { lines.append("add rule \(name) input \(rule)") }
        if undecidedServices.isEmpty { lines.append("delete chain \(name) services") }
        script = lines.joined(separator: "\n") + "\n"
    }

    /// Installs (or refreshes, atomically) the table. Returns whether it created it (false:
    /// a table was there, left by an engine that did not stop cleanly).
    @discardableResult
    public func install(prefix: [String] = []) throws -> Bool {
        let existed = (try? Command.run(prefix + ["nft", "list", "table", "inet", Self.table], timeout: 10).status) == 0
        try Self.run(script, prefix: prefix)
        // `decide`, a filter chain at -160 before 2026-12-06, which every packet passed.
        // Deleted only where it is: removing a base chain drops every packet queued in this
        // namespace, a running engine's held SYNs among them.
        if existed, (try? Command.run(prefix + ["nft", "list", "chain", "inet", Self.table, "decide"], timeout: 10).status) == 0 {
            try Self.run("flush chain inet \(Self.table) decide\ndelete chain inet \(Self.table) decide\n", prefix: prefix)
        }
        return !existed
    }

    /// Runs an nft script as one transaction (`nft -f`): all of it or nothing.
    static func run(_ script: String, prefix: [String]) throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("vpm-nft-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).nft").path
        try script.write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        try Command.checked(prefix + ["nft", "-f", path])
    }

    /// Removes the table (nothing when it is absent). Established connections lose their
    /// translation with it: only a clean stop does this.
    public static func remove() {
        _ = try? Command.run(["nft", "delete", "table", "inet", table], timeout: 10)
    }

    /// A small configuration for probing without one (`vpm probe`).
    public static let probeConfiguration = Configuration(
        virtualPorts: 20000...20001,
        initialPorts: [InitialPort(port: 9000, transport: .tcp), InitialPort(port: 9000, transport: .udp)])

    /// Whether this kernel and nft can run the kernel datapath for `configuration`: its whole
    /// table, under another name, created and deleted again. Nil when they can, else why
    /// not. `prefix` runs nft elsewhere (`ip netns exec NAME`).
    public static func unavailableReason(configuration: Configuration = probeConfiguration, prefix: [String] = []) -> String? {
        guard Command.exists("nft") else { return "the nft command is missing (apt-get install nftables)" }
        let probe = "vpm-probe-\(getpid())"
        let script = KernelNAT(configuration, table: probe).script + "delete table inet \(probe)\n"
        do { try run(script, prefix: prefix) } catch {
            _ = try? Command.run(prefix + ["nft", "delete", "table", "inet", probe], timeout: 10)
            return "nft cannot build the NAT table with a mark map here: \(error)"
        }
        return nil
    }
}
