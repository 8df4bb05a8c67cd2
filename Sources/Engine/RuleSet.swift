public import Policy
import Packet
import HostCommand
import Foundation

/// The engine's iptables rules, all in its own `VPM-*` chains, plus one jump per hook.
///
/// raw table (priority -300, before conntrack): the engine rewrites ports there, and
/// NOTRACK keeps conntrack from holding a tuple that changes half-way through a flow.
///   VPM-PREROUTING  drop direct traffic to the virtual ports (not from lo);
///                   arriving traffic to an initial port (not on lo) -> NOTRACK, NFQUEUE
///   VPM-OUTPUT      leaving traffic from a virtual port (not to lo) -> NOTRACK, NFQUEUE
/// filter table:
///   VPM-INPUT       connections the engine refused carry `refuseMark` -> REJECT
///                   (TCP reset, ICMP port unreachable), built by the kernel itself;
///                   virtual ports: over lo only with the local-mode decision's mark, and
///                   only to sockets the engine bound for instances (`ownershipRules`)
///
/// The kernel datapath (`RuleSet.firstPacket`) queues only each connection's first packet, in
/// the nat table, and lets `KernelNAT` (nft) translate the connection:
/// nat table (priority -100; NAT chains see a connection's first packet only, so established
/// packets meet no vpm rule at all):
///   VPM-PREROUTING  TCP SYN / UDP datagram to an initial port (not on lo), and from a
///                   cooperative peer to our virtual ports, that carries no decision's mark
///                   (the nft lookup's, or the engine's on the REPEAT that follows its
///                   verdict) -> NFQUEUE
///   VPM-OUTPUT      the same for local programs' connections to a peer or (local mode) over lo
/// Refusals are answered by the nft table (`KernelNAT`), not by filter chains here.
public struct RuleSet: Sendable, Equatable {
    public struct Rule: Sendable, Equatable {
        public var table: String
        public var chain: String
        public var arguments: [String]
        /// "iptables" or "ip6tables" for an address-specific rule; nil for both.
        public var tool: String?

        public init(table: String, chain: String, arguments: [String], tool: String? = nil) {
            self.table = table
            self.chain = chain
            self.arguments = arguments
            self.tool = tool
        }
    }

    /// The packet mark of a refused connection's packet ("vpm" + 1).
    public static let refuseMark: UInt32 = 0x7670_6D01
    /// The packet mark that the ownership rules' socket match leaves when it found no full
    /// socket to restore a mark from ("vpm" + 3).
    static let unseenMark: UInt32 = 0x7670_6D03
    /// (table, built-in hook, our chain), in install order.
    public static let hooks = [("raw", "PREROUTING", "VPM-PREROUTING"),
                               ("raw", "OUTPUT", "VPM-OUTPUT"),
                               ("nat", "PREROUTING", "VPM-PREROUTING"),
                               ("nat", "OUTPUT", "VPM-OUTPUT"),
                               // Used by engines before 2026-12-06 (the kernel datapath's
                               // queue rules): listed so that an engine starting over one
                               // removes them.
                               ("mangle", "PREROUTING", "VPM-PREROUTING"),
                               ("mangle", "OUTPUT", "VPM-OUTPUT"),
                               ("filter", "INPUT", "VPM-INPUT"),
                               ("filter", "OUTPUT", "VPM-OUTPUT")]
    public static let tools = ["iptables", "ip6tables"]

    public var rules: [Rule]

    public init(rules: [Rule]) { self.rules = rules }

    /// The userspace datapath's rules for a configuration (its initial ports, its virtual
    /// port range, its queue): every packet of a multiplexed flow is queued, refusals and
    /// virtual ports' guards are filter rules.
    public static func everyPacket(_ configuration: Configuration) -> RuleSet {
        let transports = transports(configuration)
        return RuleSet(rules: everyPacketRules(configuration, queues: QueueTargets(configuration), transports: transports)
            + refusalRules(configuration, transports: transports)
            + ownershipRules(configuration, transports: transports))
    }

    /// A packet that carries no decision's mark (`KernelMark`): the match both datapaths'
    /// rules test.
    private static let withoutDecisionMark = ["-m", "mark", "!", "--mark", "0x\(String(KernelMark.tag, radix: 16))/0x\(String(KernelMark.tagMask, radix: 16))"]

    /// The kernel datapath's rules: only each connection's first packet is queued. Refusals
    /// and the virtual ports' guards are in its nft table (KernelNAT), where established
    /// connections do not pass by on the way.
    public static func firstPacket(_ configuration: Configuration) -> RuleSet {
        RuleSet(rules: firstPacketRules(configuration, queues: QueueTargets(configuration), transports: transports(configuration)))
    }

    /// What `vpm probe` adds in a throwaway namespace to see that the kernel takes the rules
    /// of several queues: the first bucket's rule for TCP from a client to `port`.
    public static func queueSplitProbe(queue: UInt16, port: UInt16) -> [String] {
        let queues = QueueTargets(first: Int(queue), count: 2)
        return ["-p", "tcp", "--dport", "\(port)"]
            + queues.test(bucket: 0, client: .source, transport: .tcp, tool: "iptables") + queues.target(ofBucket: 0)
    }

    /// The transports the configuration multiplexes, TCP first.
    private static func transports(_ configuration: Configuration) -> [TransportProtocol] {
        [TransportProtocol.tcp, .udp].filter { transport in
            configuration.initialPorts.contains { $0.transport == transport }
        }
    }

    /// Userspace datapath: virtual ports belong to their instances.
    /// - Over lo (127.0.0.1 or the host's own address), a packet to a virtual port must carry
    ///   the mark of the engine's local-mode decision; a local program dialing the port
    ///   directly is refused. (From other hosts, VPM-PREROUTING drops such packets.)
    /// - A connection to a virtual port reaches only a socket the engine bound for an
    ///   instance (SO_MARK `InstanceSocket.mark`, copied to the packet by the socket match),
    ///   not another program's socket on the port. The configuration's own instances, which
    ///   listen on their ports themselves, are left out first.
    /// - The socket match restores a mark only from a full socket. A SYN that meets a
    ///   TIME_WAIT socket (a client port reused within a minute of a connection the server
    ///   closed first) or a request socket (a retransmitted SYN) keeps `unseenMark`, set just
    ///   before, and goes on to the kernel, as the kernel datapath's nft `socket mark` lets it.
    private static func ownershipRules(_ configuration: Configuration, transports: [TransportProtocol]) -> [Rule] {
        let range = "\(configuration.virtualPorts.lowerBound):\(configuration.virtualPorts.upperBound)"
        let decided = withoutDecisionMark
        let owned = ["-m", "mark", "!", "--mark", "0x" + String(InstanceSocket.mark, radix: 16)]
        let unseen = ["-m", "mark", "!", "--mark", "0x" + String(unseenMark, radix: 16)]
        func reject(_ transport: TransportProtocol) -> [String] {
            transport == .tcp ? ["-j", "REJECT", "--reject-with", "tcp-reset"] : ["-j", "REJECT"]
        }
        var rules: [Rule] = []
        for transport in transports {
            rules.append(Rule(table: "filter", chain: "VPM-INPUT",
                              arguments: ["-i", "lo", "-p", transport.name, "--dport", range] + decided + reject(transport)))
        }
        for instance in configuration.instances where transports.contains(instance.transport) {
            rules.append(Rule(table: "filter", chain: "VPM-INPUT",
                              arguments: ["-p", instance.transport.name, "--dport", "\(instance.virtualPort)", "-j", "RETURN"]))
        }
        for transport in transports {
            let opening = ["-p", transport.name, "--dport", range] + (transport == .tcp ? ["--syn"] : [])
            rules.append(Rule(table: "filter", chain: "VPM-INPUT",
                              arguments: opening + ["-j", "MARK", "--set-xmark", "0x\(String(unseenMark, radix: 16))/0xffffffff"]))
            rules.append(Rule(table: "filter", chain: "VPM-INPUT",
                              arguments: opening + ["-m", "socket", "--nowildcard", "--restore-skmark"]))
            rules.append(Rule(table: "filter", chain: "VPM-INPUT", arguments: opening + owned + unseen + reject(transport)))
        }
        return rules
    }

    /// Userspace datapath: refused connections carry `refuseMark`; arriving ones (source-routed)
    /// get the answer on INPUT, local programs' own (cooperative, local mode) on OUTPUT —
    /// their connect() fails at once.
    private static func refusalRules(_ configuration: Configuration, transports: [TransportProtocol]) -> [Rule] {
        let mark = ["-m", "mark", "--mark", "0x" + String(refuseMark, radix: 16)]
        let cooperation = configuration.cooperation
        let refusing = cooperation.local || !cooperation.peers.isEmpty ? ["VPM-INPUT", "VPM-OUTPUT"] : ["VPM-INPUT"]
        return refusing.flatMap { chain in
            transports.map { transport in
                let reject = transport == .tcp ? ["-j", "REJECT", "--reject-with", "tcp-reset"] : ["-j", "REJECT"]
                return Rule(table: "filter", chain: chain, arguments: ["-p", transport.name] + mark + reject)
            }
        }
    }

    /// Kernel datapath: a connection's first packet only, in the nat table: after conntrack,
    /// so the verdict's mark reaches the NAT rules and the conntrack entry, and where the
    /// kernel runs rules only for a connection's first packet (until NAT is set up for it).
    /// The verdict is REPEAT (`KernelDatapath`): the NAT hook runs its chains again, this
    /// one lets the marked packet by, and `KernelNAT`'s chains translate or refuse it.
    private static func firstPacketRules(_ configuration: Configuration, queues: QueueTargets, transports: [TransportProtocol]) -> [Rule] {
        let cooperation = configuration.cooperation
        let range = "\(configuration.virtualPorts.lowerBound):\(configuration.virtualPorts.upperBound)"
        // Not yet decided: the lookup in nft (`KernelNAT`, before these chains) or the
        // engine's verdict, on the REPEAT pass, left its mark. A connection whose first packet
        // was accepted unchanged (not vpm's) has no NAT set up, so its next packets still
        // called new by conntrack (a retransmitted SYN, a one-way UDP flow) come here again.
        let undecided = withoutDecisionMark + ["-m", "mark", "!", "--mark", "0x" + String(refuseMark, radix: 16)]
        // New, not RELATED: NAT chains also see the first packet of a connection a conntrack
        // helper expected, and the engine never decides those.
        func opening(_ transport: TransportProtocol) -> [String] {
            (transport == .tcp ? ["--syn"] : []) + ["-m", "conntrack", "--ctstate", "NEW"] + undecided
        }
        var rules: [Rule] = []
        for peer in cooperation.peers {
            let tool = peer.isIPv4 ? "iptables" : "ip6tables"
            for transport in transports {
                let toOurs = ["-s", peer.iptablesNetwork, "-p", transport.name, "--dport", range] + opening(transport)
                rules += queues.rules(table: "nat", chain: "VPM-PREROUTING", match: toOurs, client: .source, transport: transport, tool: tool)
            }
            for port in configuration.initialPorts {
                let transport = port.transport
                let toPeer = ["-d", peer.iptablesNetwork, "-p", transport.name, "--dport", "\(port.port)"] + opening(transport)
                rules += queues.rules(table: "nat", chain: "VPM-OUTPUT", match: toPeer, client: .source, transport: transport, tool: tool)
            }
        }
        for port in configuration.initialPorts {
            let transport = port.transport
            let match = ["!", "-i", "lo", "-p", transport.name, "--dport", "\(port.port)"] + opening(transport)
            rules += queues.rules(table: "nat", chain: "VPM-PREROUTING", match: match, client: .source, transport: transport, tool: nil)
        }
        if cooperation.local {
            for port in configuration.initialPorts {
                let transport = port.transport
                let match = ["-o", "lo", "-p", transport.name, "--dport", "\(port.port)"] + opening(transport)
                rules += queues.rules(table: "nat", chain: "VPM-OUTPUT", match: match, client: .source, transport: transport, tool: nil)
            }
        }
        return rules
    }

    /// Userspace datapath: every packet of a multiplexed flow, before conntrack (raw table).
    private static func everyPacketRules(_ configuration: Configuration, queues: QueueTargets, transports: [TransportProtocol]) -> [Rule] {
        let range = "\(configuration.virtualPorts.lowerBound):\(configuration.virtualPorts.upperBound)"
        var rules: [Rule] = []
        let cooperation = configuration.cooperation
        let notrack = ["-j", "CT", "--notrack"]
        // Cooperative peers: their clients reach our virtual ports directly (negotiated flows
        // only, decided by the engine), and our clients get replies from theirs.
        for peer in cooperation.peers {
            let tool = peer.isIPv4 ? "iptables" : "ip6tables"
            let theirs = "\(peer.virtualPorts.lowerBound):\(peer.virtualPorts.upperBound)"
            for transport in transports {
                let toOurs = ["-s", peer.iptablesNetwork, "-p", transport.name, "--dport", range]
                let fromTheirs = ["-s", peer.iptablesNetwork, "-p", transport.name, "--sport", theirs]
                // Their clients' requests come from the client port; our clients' answers go to it.
                for (match, client) in [(toOurs, ClientPort.source), (fromTheirs, .destination)] {
                    rules.append(Rule(table: "raw", chain: "VPM-PREROUTING", arguments: match + notrack, tool: tool))
                    rules += queues.rules(table: "raw", chain: "VPM-PREROUTING", match: match, client: client, transport: transport, tool: tool)
                }
            }
            for port in configuration.initialPorts {
                let toPeer = ["-d", peer.iptablesNetwork, "-p", port.transport.name, "--dport", "\(port.port)"]
                rules.append(Rule(table: "raw", chain: "VPM-OUTPUT", arguments: toPeer + notrack, tool: tool))
                rules += queues.rules(table: "raw", chain: "VPM-OUTPUT", match: toPeer, client: .source, transport: port.transport, tool: tool)
            }
        }
        for transport in transports {
            rules.append(Rule(table: "raw", chain: "VPM-PREROUTING",
                              arguments: ["!", "-i", "lo", "-p", transport.name, "--dport", range, "-j", "DROP"]))
        }
        // Loopback is left alone: source-routed mode multiplexes clients on other hosts, and
        // local programs keep reaching whatever listens on the real ports.
        for port in configuration.initialPorts {
            let match = ["!", "-i", "lo", "-p", port.transport.name, "--dport", "\(port.port)"]
            rules.append(Rule(table: "raw", chain: "VPM-PREROUTING", arguments: match + ["-j", "CT", "--notrack"]))
            rules += queues.rules(table: "raw", chain: "VPM-PREROUTING", match: match, client: .source, transport: port.transport, tool: nil)
        }
        for transport in transports {
            let match = ["!", "-o", "lo", "-p", transport.name, "--sport", range]
            rules.append(Rule(table: "raw", chain: "VPM-OUTPUT", arguments: match + ["-j", "CT", "--notrack"]))
            rules += queues.rules(table: "raw", chain: "VPM-OUTPUT", match: match, client: .destination, transport: transport, tool: nil)
        }
        if let loopbackQueue = configuration.loopbackQueue {
            // Local mode: local clients of the initial ports, and our instances' replies to
            // them, on a queue of their own that the engine binds without GSO: a loopback
            // GSO packet can be longer than NFQUEUE copies (`QueueConfiguration.largestCopy`).
            let toLoopbackQueue = ["-j", "NFQUEUE", "--queue-num", "\(loopbackQueue)"]
            for port in configuration.initialPorts {
                let match = ["-o", "lo", "-p", port.transport.name, "--dport", "\(port.port)"]
                rules.append(Rule(table: "raw", chain: "VPM-OUTPUT", arguments: match + notrack))
                rules.append(Rule(table: "raw", chain: "VPM-OUTPUT", arguments: match + toLoopbackQueue))
            }
            for transport in transports {
                let match = ["-o", "lo", "-p", transport.name, "--sport", range]
                rules.append(Rule(table: "raw", chain: "VPM-OUTPUT", arguments: match + notrack))
                rules.append(Rule(table: "raw", chain: "VPM-OUTPUT", arguments: match + toLoopbackQueue))
            }
        }
        return rules
    }

    /// One fixed translation (`vpm translate`): TCP to `initialPort` and from `virtualPort`.
    public static func staticTranslation(queue: UInt16, initialPort: UInt16, virtualPort: UInt16) -> RuleSet {
        let ingress = ["-p", "tcp", "--dport", "\(initialPort)"]
        let egress = ["-p", "tcp", "--sport", "\(virtualPort)"]
        let toQueue = ["-j", "NFQUEUE", "--queue-num", "\(queue)"]
        return RuleSet(rules: [
            Rule(table: "raw", chain: "VPM-PREROUTING", arguments: ingress + ["-j", "CT", "--notrack"]),
            Rule(table: "raw", chain: "VPM-PREROUTING", arguments: ingress + toQueue),
            Rule(table: "raw", chain: "VPM-OUTPUT", arguments: egress + ["-j", "CT", "--notrack"]),
            Rule(table: "raw", chain: "VPM-OUTPUT", arguments: egress + toQueue),
        ])
    }

    /// The chains this rule set uses, with their hooks, in install order.
    private var usedHooks: [(String, String, String)] {
        Self.hooks.filter { hook in rules.contains { $0.table == hook.0 && $0.chain == hook.2 } }
    }

    /// The commands that install the rules, as an operator would type them.
    public func installCommands() -> [[String]] {
        Self.tools.flatMap { tool in
            usedHooks.map { [tool, "-w", "-t", $0.0, "-N", $0.2] }
                + rules.filter { $0.tool == nil || $0.tool == tool }.map { [tool, "-w", "-t", $0.table, "-A", $0.chain] + $0.arguments }
                + usedHooks.map { [tool, "-w", "-t", $0.0, "-I", $0.1, "1", "-j", $0.2] }
        }
    }

    /// The commands that remove every VPM-* chain (safe when they are absent).
    public static func removeCommands() -> [[String]] {
        tools.flatMap { tool in
            hooks.flatMap { table, hook, chain in
                [[tool, "-w", "-t", table, "-D", hook, "-j", chain],
                 [tool, "-w", "-t", table, "-F", chain],
                 [tool, "-w", "-t", table, "-X", chain]]
            }
        }
    }

    /// A shell script with the install commands, for `vpm rules print`.
    public func script() -> String {
        (["#!/bin/sh", "# Generated by `vpm rules print`; remove with iptables/remove.sh or `vpm rules remove`.", "set -e"]
            + installCommands().map { $0.map(Self.shellWord).joined(separator: " ") }).joined(separator: "\n") + "\n"
    }

    /// `argument` as one shell word: as it is when nothing in it is special to sh (`!` is not,
    /// outside an interactive shell), else in single quotes (a u32 test has `&` and `>`).
    static func shellWord(_ argument: String) -> String {
        let plain = argument.unicodeScalars.allSatisfy { scalar in
            scalar.properties.isASCIIHexDigit || ("a"..."z").contains(scalar) || ("A"..."Z").contains(scalar)
                || "-_./:,=+!@%".unicodeScalars.contains(scalar)
        }
        return plain && !argument.isEmpty ? argument : "'" + argument.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }

    /// What `iptables-restore --noflush` (or ip6tables-restore) reads to set the VPM-*
    /// chains of `tool` at once: each chain declared (created, or flushed when it exists, so
    /// nothing stale stays), then refilled, one transaction per run.
    public func restoreInput(_ tool: String) -> String {
        var text = ""
        for table in ["raw", "nat", "filter"] {
            let chains = usedHooks.filter { $0.0 == table }.map(\.2)
            guard !chains.isEmpty else { continue }
            text += "*\(table)\n" + chains.map { ":\($0) - [0:0]\n" }.joined()
            for rule in rules where rule.table == table && (rule.tool == nil || rule.tool == tool) {
                text += (["-A", rule.chain] + rule.arguments).joined(separator: " ") + "\n"
            }
            text += "COMMIT\n"
        }
        return text
    }

    /// Installs the rules; on any failure removes what was installed and throws.
    ///
    /// In place: the chains are replaced in one iptables-restore transaction and the jumps
    /// to them added only where missing, so an engine taking over from a killed one (or
    /// from one stopped with `--keep-connections`) never leaves a moment without rules —
    /// a multiplexed connection's packet meeting none would reach the initial port
    /// untranslated and be reset.
    public func install() throws {
        do {
            for tool in Self.tools {
                let input = FileManager.default.temporaryDirectory.appendingPathComponent("vpm-rules-\(getpid())-\(tool)").path
                try restoreInput(tool).write(toFile: input, atomically: true, encoding: .utf8)
                defer { try? FileManager.default.removeItem(atPath: input) }
                try Command.checked([tool + "-restore", "-w", "--noflush", input])
                for (table, hook, chain) in usedHooks {
                    let present = try Command.run([tool, "-w", "-t", table, "-C", hook, "-j", chain]).status == 0
                    if !present { try Command.checked([tool, "-w", "-t", table, "-I", hook, "1", "-j", chain]) }
                }
            }
        } catch {
            Self.remove()
            throw error
        }
        // Then the chains this rule set does not use (the other datapath's, left by a killed
        // engine, or an older engine's), once this set's are in.
        for (table, hook, chain) in Self.hooks where !usedHooks.contains(where: { $0.0 == table && $0.2 == chain }) {
            for tool in Self.tools {
                _ = try? Command.run([tool, "-w", "-t", table, "-D", hook, "-j", chain], timeout: 10)
                _ = try? Command.run([tool, "-w", "-t", table, "-F", chain], timeout: 10)
                _ = try? Command.run([tool, "-w", "-t", table, "-X", chain], timeout: 10)
            }
        }
    }

    /// The mangle chains engines before 2026-12-06 queued from (`tool table chain`), where
    /// they are still installed.
    static func olderQueueChains() -> [String] {
        tools.flatMap { tool in
            ["VPM-PREROUTING", "VPM-OUTPUT"].compactMap { chain in
                (try? Command.run([tool, "-w", "-t", "mangle", "-S", chain], timeout: 10))?.status == 0 ? "\(tool) -t mangle \(chain)" : nil
            }
        }
    }

    /// Removes every VPM-* chain and its jump rule, ignoring what is already gone.
    public static func remove() {
        for command in removeCommands() {
            // Delete jump rules until none is left (a crashed run may have added two).
            repeat {
                guard let output = try? Command.run(command, timeout: 10), output.status == 0 else { break }
            } while command.contains("-D")
        }
    }
}
