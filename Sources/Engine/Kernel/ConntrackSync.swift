import Decision
import FlowTable
import Foundation
import Logging
import Netfilter
import Packet
import Policy
import Synchronization

/// Kernel datapath: keeps the flow table in step with conntrack, which carries the flows.
///
/// The engine records a flow when it decides its first packet; from then on conntrack
/// knows more than the engine does. This thread learns each flow's end from conntrack's
/// destroy events and, every few seconds (every second while `vpm flows --watch` runs, and
/// whenever `vpm flows` asks), its TCP state and counters from a dump of the entries
/// carrying a vpm mark. A connection the kernel decided by itself (`KernelDecisions`) never
/// reached the engine, and sends no event either (its lookup rule sets `ct event set 0x0`:
/// two events per connection cost the kernel about a tenth of its new-connection rate): the
/// dump finds it (`Adding.decidedInKernel`). The same dump rebuilds the table when the
/// engine starts, so a restarted engine lists the connections that kept running without it.
final class ConntrackSync: @unchecked Sendable {
    /// How often the thread re-reads conntrack when no event wakes it.
    static let interval: UInt64 = 5000
    /// A flow this young may still be missing from conntrack (its first packet is on its
    /// way, or held for a negotiation): a dump without it does not end it.
    static let grace: UInt64 = 3000

    private let configuration: Configuration
    private let store: SharedFlowTable
    private let registry: InstanceRegistry
    private let logger: Logger
    private let events: Conntrack
    private let stopping = Atomic<Bool>(false)
    private let finished = DispatchSemaphore(value: 0)
    /// One dump at a time (the thread's and the control thread's `refresh`).
    private let dumping = Mutex(())
    /// Socket datapath: the steered connections, which conntrack never sees (`SocketFlows`),
    /// and their initial ports.
    private let sockets = Mutex<(ports: Set<UInt16>, observe: (@Sendable () -> [SocketFlows.Observed]?)?)>(([], nil))

    /// Socket datapath: each dump also reads `observe`'s flows, and a flow to one of `ports`
    /// that neither reports has ended (it is closed, not removed: the table's own timeout
    /// removes it, as it does every closed flow). `observe` answers nil when it could not read
    /// the sockets: then no steered flow is taken for ended.
    func observeSockets(ports: Set<UInt16>, _ observe: @escaping @Sendable () -> [SocketFlows.Observed]?) {
        sockets.withLock { $0 = (ports, observe) }
    }

    /// Opens the event socket (destroy events) and the dump socket; throws when conntrack's
    /// netlink interface is not there.
    init(configuration: Configuration, store: SharedFlowTable, registry: InstanceRegistry, logger: Logger) throws {
        self.configuration = configuration
        self.store = store
        self.registry = registry
        self.logger = logger
        events = try Conntrack(events: [.destroy])
    }

    /// Which entries the table lacks a dump adds.
    enum Adding {
        /// At start: every one (the connections that ran while no engine did).
        case everything
        /// Source-routed connections whose last packet is more recent than the table's
        /// timeout for their state: the ones the kernel decided, which the table has not
        /// seen yet. Not one the table expired (its state's timeout, as in the userspace
        /// datapath) while conntrack keeps its own entry for longer, nor one the engine
        /// decided, which the table had from its first packet.
        case decidedInKernel(ConntrackTimeouts)
    }

    /// Reads conntrack once: known flows get their state and counters, flows conntrack no
    /// longer has are removed, and entries the table lacks are added as `adding` says
    /// (all at start, else the kernel's own decisions). Returns (added, removed).
    @discardableResult
    func refresh(adding: Adding) throws -> (added: Int, removed: Int) {
        try dumping.withLock { _ in
            let conntrack = try Conntrack()
            let started = MonotonicClock.milliseconds()
            // Every virtual port conntrack still translates to: released ports stay out of
            // new instances' reach until none is (`InstanceRegistry.releaseQuarantine`).
            var routed = Set<InstanceRegistry.PortKey>()
            let (steered, observe) = sockets.withLock { $0 }
            let observed = observe?()
            let result = try Self.reconcile(store: store, configuration: configuration, instances: registry.instances(),
                                            now: started, adding: adding, aids: registry.slots.aids, sockets: observed ?? [],
                                            steered: observed == nil ? [] : steered) { (take) throws(NetfilterError) in
                try conntrack.forEachEntry(mark: KernelMark.tag, mask: KernelMark.tagMask) { entry in
                    if let key = Self.routedPort(entry) { routed.insert(key) }
                    take(entry)
                }
            }
            registry.releaseQuarantine(dumpStarted: started, routed: routed)
            return result
        }
    }

    func start() {
        let thread = Thread { [self] in
            var last = MonotonicClock.milliseconds()
            var lastRebuild: UInt64 = 0
            while !stopping.load(ordering: .relaxed) {
                do {
                    if try events.waitForEvents(timeoutMilliseconds: 200) {
                        var overrun = false
                        try events.drainEvents { event in
                            switch event {
                            case .destroy(let entry): ended(entry)
                            case .overrun: overrun = true
                            case .new, .update: break
                            }
                        }
                        // Destroy events were lost: read the whole table now, which removes the
                        // flows it no longer has. At most once an interval: under a flood the
                        // socket overflows again and again, and each dump reads the whole table.
                        if overrun {
                            let now = MonotonicClock.milliseconds()
                            if MonotonicClock.elapsed(since: lastRebuild, now: now) >= Self.interval {
                                lastRebuild = now
                                last = now
                                try refresh(adding: .decidedInKernel(.read()))
                            } else {
                                last = 0
                            }
                        }
                    }
                    let now = MonotonicClock.milliseconds()
                    // A released port waits for a dump begun after its release; do not make it
                    // wait a whole interval (a second at least between such dumps).
                    if let released = registry.latestQuarantine, released >= last,
                       MonotonicClock.elapsed(since: last, now: now) >= 1000 {
                        last = 0
                    }
                    if MonotonicClock.elapsed(since: last, now: now) >= Self.interval {
                        last = now
                        try refresh(adding: .decidedInKernel(.read()))
                    }
                } catch {
                    logger.warning("conntrack: \(error); retrying in a second")
                    sleep(1)
                }
            }
            finished.signal()
        }
        thread.name = "vpm-conntrack"
        thread.start()
    }

    func stop() {
        stopping.store(true, ordering: .relaxed)
        finished.wait()
    }

    /// A destroy event. A client that reuses its port while conntrack still holds the old
    /// entry (TIME_WAIT) makes the kernel destroy that entry just as the new connection is
    /// decided under the same key: a flow younger than the grace period is left to the next
    /// dump, which removes it only if conntrack has no entry for it either.
    private func ended(_ entry: ConntrackEntry) {
        guard KernelMark(entry.mark) != nil, let flow = flow(entry) else { return }
        let now = MonotonicClock.milliseconds()
        store.withLock { table in
            guard let handle = table.lookup(flow.key), let translation = table.translation(handle),
                  MonotonicClock.elapsed(since: translation.firstSeen, now: now) >= Self.grace else { return }
            table.remove(handle)
        }
    }

    /// Applies a dump to the table as `dump` hands over its entries, a slice at a time, so
    /// the queue threads (which take the same lock for each decision) never wait for a whole
    /// table's worth of work, and the lock is never held while the dump is read. Only the
    /// keys of flows in the table are remembered: memory is bounded by the table, not by
    /// conntrack (a SYN flood leaves hundreds of thousands of entries the table evicted).
    /// `sockets` and `steered`: the socket datapath's flows (`observeSockets`).
    static func reconcile(store: SharedFlowTable, configuration: Configuration, instances: [Instance], now: UInt64, adding: Adding,
                          aids: [Int: AID]? = nil, sockets: [SocketFlows.Observed] = [], steered: Set<UInt16> = [],
                          _ dump: (_ take: (ConntrackEntry) -> Void) throws(NetfilterError) -> Void) throws(NetfilterError)
        -> (added: Int, removed: Int) {
        var seen = Set<FlowKey>()
        // Each flow with its idle time by conntrack's clock (`ConntrackTimeouts.idle`).
        var pending: [(flow: Flow, idle: UInt64?)] = []
        pending.reserveCapacity(Self.slice)
        var added = 0
        func apply() {
            added += store.withLock { table -> Int in
                var added = 0
                for (flow, idle) in pending {
                    var handle = table.lookup(flow.key)
                    if handle == nil && Self.adds(flow, idle: idle, adding, timeouts: table.timeouts) {
                        handle = table.insert(flow.key, virtualPort: flow.virtualPort, aid: flow.aid, mode: flow.mode,
                                              peer: flow.peer, now: now).handle
                        if handle != nil { added += 1 }
                    }
                    if let handle {
                        table.observe(handle, state: flow.state, counters: flow.counters, now: now)
                        seen.insert(flow.key)
                    }
                }
                return added
            }
            pending.removeAll(keepingCapacity: true)
        }
        try dump { entry in
            guard let flow = Self.flow(entry, configuration: configuration, instances: instances, aids: aids) else { return }
            if case .decidedInKernel(let conntrack) = adding {
                pending.append((flow, conntrack.idle(entry)))
            } else {
                pending.append((flow, nil))
            }
            if pending.count == Self.slice { apply() }
        }
        for (flow, idle) in sockets {
            pending.append((flow, idle))
            if pending.count == Self.slice { apply() }
        }
        apply()
        let unseen = store.snapshot().filter { !seen.contains($0.key) && MonotonicClock.elapsed(since: $0.firstSeen, now: now) >= Self.grace }
        // A steered connection that no socket reports any more has ended: closed, kept for
        // the table's closed timeout like every other.
        let ended = unseen.filter { $0.key.transport == .tcp && $0.mode == .source && steered.contains($0.key.initialPort) }
        if !ended.isEmpty {
            store.withLock { table in
                for translation in ended where translation.state != .closed {
                    if let handle = table.lookup(translation.key) {
                        table.observe(handle, state: .closed, counters: translation.counters, now: now)
                    }
                }
            }
        }
        let gone = unseen.filter { !($0.key.transport == .tcp && $0.mode == .source && steered.contains($0.key.initialPort)) }.map(\.key)
        var start = 0
        while start < gone.count {
            let slice = gone[start..<min(start + Self.slice, gone.count)]
            start += Self.slice
            store.withLock { table in for key in slice { table.remove(key) } }
        }
        return (added, gone.count)
    }

    /// Whether a dump adds `flow`, which the table lacks (`Adding`). `idle`: milliseconds
    /// since its last packet by conntrack's timeout, nil when unknown (then it is added: a
    /// connection missing from `vpm flows` is worse than one listed for a timeout longer).
    static func adds(_ flow: Flow, idle: UInt64?, _ adding: Adding, timeouts: FlowTimeouts) -> Bool {
        switch adding {
        case .everything: return true
        case .decidedInKernel:
            guard flow.mode == .source else { return false }
            guard let idle else { return true }
            return idle < timeouts.timeout(for: flow.state)
        }
    }

    /// The transport and virtual port a vpm conntrack entry's connection reaches: where NAT
    /// sends it (the reply's source port), or the port it arrived on.
    static func routedPort(_ entry: ConntrackEntry) -> InstanceRegistry.PortKey? {
        guard let transport = TransportProtocol(rawValue: entry.protocolNumber) else { return nil }
        return InstanceRegistry.PortKey(transport: transport, port: entry.reply.sourcePort)
    }

    /// Flows per lock hold in `reconcile`.
    static let slice = 1024

    /// What the flow table records for a conntrack entry with a vpm mark.
    struct Flow: Equatable {
        var key: FlowKey
        var virtualPort: UInt16
        var aid: AID
        var mode: FlowMode
        var peer: String?
        var state: FlowState
        var counters: FlowCounters
    }

    /// The registry's instances, read again when they change (the event thread only: one
    /// event per new connection of the host must not copy them each time).
    private var instances: (generation: UInt64, list: [Instance]) = (0, [])

    func flow(_ entry: ConntrackEntry) -> Flow? {
        let generation = registry.generation
        if generation != instances.generation { instances = (generation, registry.instances()) }
        return Self.flow(entry, configuration: configuration, instances: instances.list, aids: registry.slots.aids)
    }

    /// `aids`: the AID each kernel mark slot names now (`AIDSlots`); nil: the slots the
    /// configuration gives at start.
    static func flow(_ entry: ConntrackEntry, configuration: Configuration, instances: [Instance], aids: [Int: AID]? = nil) -> Flow? {
        guard let mark = KernelMark(entry.mark),
              let client = IPAddress(bytes: entry.original.source),
              let server = IPAddress(bytes: entry.original.destination),
              let transport = TransportProtocol(rawValue: entry.protocolNumber) else { return nil }
        let translated = entry.reply.sourcePort != entry.original.destinationPort
        let virtualPort = translated ? entry.reply.sourcePort : entry.original.destinationPort
        let instance = instances.first { $0.virtualPort == virtualPort && $0.initialPort.transport == transport }
        // Without NAT the connection arrived on the virtual port (a cooperative peer's client).
        guard let initialPort = translated ? entry.original.destinationPort : instance?.initialPort.port else { return nil }
        // The instance on the virtual port names the AID; the mark's slot only where the port
        // is not ours (our client's connection to a cooperative peer).
        var aid = AID.unknown
        if translated && mark.mode == .cooperative || instance == nil {
            aid = (aids ?? AIDSlots(configuration: configuration).aids)[mark.slot] ?? .unknown
        } else if let instance {
            aid = instance.aid
        }
        var peer: String?
        if mark.mode == .cooperative {
            if mark.hostSlot > 0, let host = IPAddress(bytes: entry.reply.source), let partner = configuration.cooperation.peer(for: host) {
                // Through a service address: the host NAT sent it to, which the reply comes from.
                peer = partner.engineLabel(host)
            } else if translated, let partner = configuration.cooperation.peer(for: server) {
                // Our client's connection to a peer: named as the negotiation named it.
                peer = partner.engineLabel(server)
            } else {
                peer = "\(client)"
            }
        }
        let counters = FlowCounters(packetsToServer: entry.originalPackets, bytesToServer: entry.originalBytes,
                                    packetsToClient: entry.replyPackets, bytesToClient: entry.replyBytes)
        return Flow(key: FlowKey(transport: transport, client: client, clientPort: entry.original.sourcePort,
                                 server: server, initialPort: initialPort),
                    virtualPort: virtualPort, aid: aid, mode: mark.mode, peer: peer,
                    state: state(entry, transport: transport), counters: counters)
    }

    /// conntrack's TCP states (TCP_CONNTRACK_*) in the flow table's terms.
    static func state(_ entry: ConntrackEntry, transport: TransportProtocol) -> FlowState {
        guard transport == .tcp else { return entry.replyPackets > 0 || entry.isAssured ? .udpStream : .udp }
        switch entry.tcpState ?? 0 {
        case 3: return .established
        case 4, 5, 6: return .closing  // FIN_WAIT, CLOSE_WAIT, LAST_ACK
        case 7, 8: return .closed  // TIME_WAIT, CLOSE
        default: return .opening  // NONE, SYN_SENT, SYN_RECV, SYN_SENT2
        }
    }
}
