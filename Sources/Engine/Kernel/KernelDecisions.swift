import Decision
import FlowTable
import Packet
import Policy
import Synchronization

/// Kernel datapath: the source-routed decisions the kernel takes by itself.
///
/// In source-routed mode a connection's decision is a function of its packet: the client's
/// address (and port) picks the AID by the `sources` rules, the AID's accepting instance on
/// the initial port picks the virtual port. The engine keeps that function in the nft maps
/// `hosts`, `endpoints` and `networks` (`KernelNAT`'s chain `lookup` reads them), one element per source
/// rule, initial port and transport whose AID has an instance there, so such a connection's
/// first packet is marked and translated in the kernel and never queued. Everything the maps
/// do not cover goes on to the engine as before: refusals (no rule, no instance, a draining
/// one), cooperative and local connections. The flow table learns the kernel's decisions from
/// conntrack's new-connection events (`ConntrackSync`).
///
/// The maps follow the instances (`vpm exec` programs come and go) and the source rules
/// (`vpm reload`). A virtual port the maps still name is withheld from new instances
/// (`InstanceRegistry.withhold`) until the maps no longer name it, and a released port waits
/// until conntrack translates no connection to it (`InstanceRegistry.releaseQuarantine`):
/// the kernel never sends one AID's clients to a port another AID's instance was just given.
final class KernelDecisions: Sendable {
    /// One of the maps, by family and by the kind of source rule it holds: single addresses
    /// and address:port rules in hash maps (100,000 load in 1.6 s here), networks in an interval map, whose loading grows with the square of its
    /// size in the kernel (20,000 elements: 5.6 s here): at most `networkLimit` elements go
    /// there, the rest are left to the engine.
    struct Map: Sendable {
        var name: String
        /// nft's type, and the key its lookup builds from a packet.
        var type: String
        var key: String
        var interval: Bool

        static func all(family: String, address: String, suffix: String) -> [Map] {
            [Map(name: "hosts" + suffix, type: "inet_proto . \(address) . inet_service : mark",
                 key: "meta l4proto . \(family) saddr . th dport", interval: false),
             Map(name: "endpoints" + suffix, type: "inet_proto . \(address) . inet_service . inet_service : mark",
                 key: "meta l4proto . \(family) saddr . th sport . th dport", interval: false),
             Map(name: "networks" + suffix, type: "inet_proto . \(address) . inet_service : mark",
                 key: "meta l4proto . \(family) saddr . th dport", interval: true)]
        }
    }

    static let maps = Map.all(family: "ip", address: "ipv4_addr", suffix: "4") + Map.all(family: "ip6", address: "ipv6_addr", suffix: "6")
    /// The most network elements the interval maps get (the kernel's load time grows with the
    /// square of their size); connections of the rest are decided by the engine.
    static let networkLimit = 4096

    /// One map element: `key` in nft's text ("tcp . 198.18.1.0/24 . 9000").
    struct Element: Hashable, Comparable {
        var map: String
        var key: String
        var mark: UInt32
        var transport: TransportProtocol
        var virtualPort: UInt16

        static func < (lhs: Element, rhs: Element) -> Bool { (lhs.map, lhs.key) < (rhs.map, rhs.key) }
    }

    private struct State {
        /// What the maps hold, or may hold: after a failed update, what they held before it
        /// and what it tried to put in.
        var installed: Set<Element> = []
        /// False before the first update and after a failed one: the next rewrites the maps
        /// whole.
        var exact = false
        var routes: UInt64 = 0
        var sources: UInt64 = 0
        var failedAt: UInt64?
        var leftToEngine = 0
    }

    private let registry: InstanceRegistry
    private let state = Mutex(State())
    /// The transports whose instances the maps route (the socket datapath steers TCP itself).
    private let transports: Set<TransportProtocol>

    init(registry: InstanceRegistry, transports: Set<TransportProtocol> = [.tcp, .udp]) {
        self.registry = registry
        self.transports = transports
        registry.quarantineReleasedPorts()
    }

    /// The elements for source rules and instances: only accepting instances, only AIDs with
    /// a kernel mark slot.
    static func elements(sources: [SourceRule], instances: [Instance], slots: [AID: Int]) -> Set<Element> {
        var rules: [AID: [SourceRule]] = [:]
        for rule in sources { rules[rule.aid, default: []].append(rule) }
        var elements = Set<Element>()
        for instance in instances where instance.accepting {
            guard let slot = slots[instance.aid], let matching = rules[instance.aid] else { continue }
            let transport = instance.initialPort.transport
            let mark = KernelMark(mode: .source, slot: slot, virtualPort: instance.virtualPort).value
            for rule in matching {
                for part in rule.match.familyParts {
                    let family = part.isIPv4 ? "4" : "6"
                    let (map, clientPort) = !part.isSingleAddress ? ("networks", "")
                        : part.port.map { ("endpoints", " . \($0)") } ?? ("hosts", "")
                    elements.insert(Element(map: map + family,
                                            key: "\(transport.name) . \(part.network)\(clientPort) . \(instance.initialPort.port)",
                                            mark: mark, transport: transport, virtualPort: instance.virtualPort))
                }
            }
        }
        return elements
    }

    /// The nft script that turns `installed` (nil: unknown, rewrite whole) into `wanted`.
    static func script(from installed: Set<Element>?, to wanted: Set<Element>, table: String = KernelNAT.table) -> String {
        var lines: [String] = []
        let removed: [Element], added: [Element]
        if let installed {
            removed = installed.subtracting(wanted).sorted()
            added = wanted.subtracting(installed).sorted()
        } else {
            lines += maps.map { "flush map inet \(table) \($0.name)" }
            removed = []
            added = wanted.sorted()
        }
        // Slices: one very long line is slow for nft's parser.
        for map in maps.map(\.name) {
            let gone = removed.filter { $0.map == map }.map(\.key)
            for start in stride(from: 0, to: gone.count, by: 512) {
                lines.append("delete element inet \(table) \(map) { \(gone[start..<min(start + 512, gone.count)].joined(separator: ", ")) }")
            }
            let new = added.filter { $0.map == map }.map { "\($0.key) : 0x\(String($0.mark, radix: 16))" }
            for start in stride(from: 0, to: new.count, by: 512) {
                lines.append("add element inet \(table) \(map) { \(new[start..<min(start + 512, new.count)].joined(separator: ", ")) }")
            }
        }
        return lines.isEmpty ? "" : lines.joined(separator: "\n") + "\n"
    }

    /// Brings the maps up to date with the registry's instances and `configuration`'s source
    /// rules, when either moved (`sources`: the reload generation). A failure is retried
    /// every few seconds; meanwhile the maps are empty (or, when even emptying them failed,
    /// their ports stay withheld), so first packets are queued and the engine decides.
    /// Returns nil, or the error of an attempt made now.
    @discardableResult
    func update(configuration: Configuration, sources: UInt64, now: UInt64) -> String? {
        state.withLock { state in
            let routes = registry.generation
            guard !state.exact || state.routes != routes || state.sources < sources else { return nil }
            if let failedAt = state.failedAt, MonotonicClock.elapsed(since: failedAt, now: now) < 5000 { return nil }
            let (wanted, left) = Self.capped(Self.elements(sources: configuration.sources,
                                                           instances: registry.instances().filter { transports.contains($0.initialPort.transport) },
                                                           slots: registry.slots.all))
            state.leftToEngine = left
            let script = Self.script(from: state.exact ? state.installed : nil, to: wanted)
            if !script.isEmpty {
                // Until nft has run, the ports of both the old and the new maps are withheld.
                registry.withhold(Self.ports(wanted.union(state.installed)), of: transports)
                do { try KernelNAT.run(script, prefix: []) } catch {
                    // The maps must not route by rules or instances that are gone: empty
                    // them, so the engine decides every connection until a rewrite works.
                    let emptied = (try? KernelNAT.run(Self.script(from: nil, to: []), prefix: [])) != nil
                    state.installed = emptied ? [] : state.installed.union(wanted)
                    state.exact = false
                    state.failedAt = now
                    return "\(error)"
                }
            }
            registry.withhold(Self.ports(wanted), of: transports)
            state.installed = wanted
            state.exact = true
            state.routes = routes
            state.sources = sources
            state.failedAt = nil
            return nil
        }
    }

    /// At most `networkLimit` network elements (the first in order, so the choice is stable);
    /// how many were left out.
    static func capped(_ elements: Set<Element>) -> (Set<Element>, left: Int) {
        let networks = elements.filter { $0.map.hasPrefix("networks") }
        guard networks.count > networkLimit else { return (elements, 0) }
        let left = networks.sorted().dropFirst(networkLimit)
        return (elements.subtracting(left), left.count)
    }

    /// Network elements left to the engine by the last update (`networkLimit`).
    var leftToEngine: Int { state.withLock { $0.leftToEngine } }

    /// Whether the maps follow source rules of reload `generation` (or later).
    func follows(sources generation: UInt64) -> Bool {
        state.withLock { $0.exact && $0.sources >= generation }
    }

    /// How many elements the maps hold (for the log).
    var count: Int { state.withLock { $0.exact ? $0.installed.count : 0 } }

    private static func ports(_ elements: Set<Element>) -> Set<InstanceRegistry.PortKey> {
        Set(elements.map { InstanceRegistry.PortKey(transport: $0.transport, port: $0.virtualPort) })
    }
}
