import Control
import FlowTable
public import Logging
import Netfilter
import Packet
public import Policy
import Synchronization

/// `vpm run`: the queue loop, the control socket and the rules, for one configuration.
public final class Engine {
    public struct Options: Sendable {
        public var configuration: Configuration
        public var socketPath: String = ControlSocket.defaultPath
        public var installRules = true
        public var segmentationOffload = true
        public var failOpen = false

        public init(configuration: Configuration) { self.configuration = configuration }
    }

    private let options: Options
    private let logger: Logger
    private let published = PublishedStatistics()

    public init(options: Options, logger: Logger) {
        self.options = options
        self.logger = logger
    }

    /// Runs until SIGINT or SIGTERM. Start-up failures throw after undoing what was done.
    public func run() throws {
        StopSignal.install()
        let configuration = options.configuration
        let table = FlowTable(capacity: configuration.flowCapacity, timeouts: TableTimeouts(configuration.timeouts))
        let store = FlowTableStore(table)
        let clients = ClientSockets()
        var processor = PacketProcessor(configuration: configuration, store: store, clients: clients)
        let registry = InstanceRegistry(configuration: configuration, statePath: options.socketPath + ".instances")
        let cooperation = CooperationService(configuration: configuration, store: store, registry: registry, logger: logger)
        processor.updateRoutes(registry.instances(), generation: registry.generation)

        // Order matters: a second engine must fail before it touches the first one's rules,
        // so the control socket and the queue come before the rules.
        let listener = try ControlListener(path: options.socketPath) { [published, options, logger] request, peer in
            Self.answer(request, peer: peer, store: store, registry: registry, clients: clients, cooperation: cooperation,
                        published: published, queue: options.configuration.queue, logger: logger)
        }
        defer { listener.close() }
        var queueConfiguration = QueueConfiguration(queueNumber: configuration.queue)
        queueConfiguration.segmentationOffload = options.segmentationOffload
        queueConfiguration.failOpen = options.failOpen
        let queue = try NetfilterQueue(queueConfiguration)
        do { try cooperation.start() } catch {
            throw ControlError("cannot start the negotiation server on port \(configuration.cooperation.listenPort ?? 0): \(error) (is another engine or program using it? change cooperative: listen)")
        }
        defer { cooperation.stop() }
        if options.installRules {
            do { try RuleSet(configuration).install() } catch {
                throw ControlError("cannot install the iptables rules: \(error)")
            }
        }
        defer { if options.installRules { RuleSet.remove() } }
        listener.start()
        let watcher = InstanceWatcher(registry: registry, store: store, logger: logger)
        watcher.start()
        defer { watcher.stop() }
        logger.info("engine running", metadata: [
            "queue": "\(configuration.queue)",
            "ports": "\(configuration.initialPorts.map(\.description).joined(separator: ","))",
            "applications": "\(configuration.applications.map(\.aid.name).joined(separator: ","))",
            "socket": "\(options.socketPath)",
            "gso": "\(options.segmentationOffload)",
        ])

        var lastHousekeeping: UInt64 = 0
        var lastLoggedRefusals: UInt64 = 0
        while !StopSignal.isRequested {
            // While SYNs are held, look for negotiation outcomes every few milliseconds.
            if try queue.wait(timeoutMilliseconds: processor.holdsConnections ? 2 : 200) {
                // After the wait: an instance registered while we slept must be routable
                // for the very SYN that woke us.
                if registry.generation != processor.routesGeneration {
                    let generation = registry.generation
                    processor.updateRoutes(registry.instances(), generation: generation)
                }
                let now = MonotonicClock.milliseconds()
                try queue.drain { processor.process($0, now: now) }
            }
            for (key, aid, peer) in processor.takeNegotiations() {
                logger.debug("negotiating", metadata: ["client": "\(Self.endpoint(key.client, key.clientPort))", "aid": "\(aid)"])
                cooperation.negotiate(key, aid: aid, peer: peer)
            }
            for outcome in cooperation.takeOutcomes() {
                var virtualPort: UInt16?
                switch outcome.answer {
                case .accepted(let port):
                    virtualPort = port
                    logger.debug("negotiated", metadata: [
                        "client": "\(Self.endpoint(outcome.key.client, outcome.key.clientPort))", "virtual-port": "\(port)",
                    ])
                case .refused(let reason), .failed(let reason):
                    logger.notice("cooperative connection refused", metadata: [
                        "client": "\(Self.endpoint(outcome.key.client, outcome.key.clientPort))",
                        "server": "\(Self.endpoint(outcome.key.server, outcome.key.initialPort))",
                        "peer-engine": "\(outcome.peer)", "reason": "\(reason)",
                    ])
                }
                processor.complete(outcome.key, virtualPort: virtualPort, peer: outcome.peer,
                                   now: MonotonicClock.milliseconds()) { packet, verdict in
                    queue.sendVerdict(verdict, for: packet)
                }
            }
            let now = MonotonicClock.milliseconds()
            guard now &- lastHousekeeping >= 200 else { continue }
            lastHousekeeping = now
            store.withLock { _ = $0.expire(now: now, limit: 50_000) }
            for key in processor.overdue(now: now, limit: UInt64(configuration.cooperation.timeoutMilliseconds) + 1000) {
                // A negotiation that never answered (its client should have): refuse it.
                processor.complete(key, virtualPort: nil, peer: "-", now: now) { packet, verdict in
                    queue.sendVerdict(verdict, for: packet)
                }
            }
            publish(processor.counters, queue.statistics, store: store)
            if processor.counters.refused != lastLoggedRefusals, let refusal = processor.lastRefusal {
                logger.notice("refused connections", metadata: [
                    "count": "\(processor.counters.refused - lastLoggedRefusals)",
                    "last-client": "\(Self.endpoint(refusal.client, refusal.clientPort))",
                    "port": "\(refusal.initialPort)",
                    "reason": "\(refusal.reason.name)",
                ])
                lastLoggedRefusals = processor.counters.refused
            }
        }
        publish(processor.counters, queue.statistics, store: store)
        logger.info("engine stopping: removing rules and the control socket",
                    metadata: ["packets": "\(processor.counters.packets)"])
    }

    /// Copies the queue thread's counters where the control thread can read them.
    private func publish(_ counters: EngineCounters, _ queue: QueueStatistics, store: FlowTableStore) {
        let flows = store.withLock { $0.statistics }
        published.withLock { statistics in
            statistics.packetsQueued = counters.packets
            statistics.rewritten = counters.rewritten
            statistics.acceptedUnchanged = counters.acceptedUnchanged
            statistics.dropped = counters.dropped
            statistics.refused = counters.refused
            statistics.checksumIncremental = counters.checksumIncremental
            statistics.checksumRecomputed = counters.checksumRecomputed
            statistics.held = counters.held
            statistics.receiveBufferOverruns = queue.receiveBufferOverruns
            statistics.flowsActive = flows.active
            statistics.flowsInserted = flows.inserted
            statistics.flowsExpired = flows.expired
            statistics.flowsEvicted = flows.evicted
            statistics.flowsRefusedFull = flows.refusedFull
            statistics.flowCapacity = flows.capacity
            var reasons: [String: UInt64] = [:]
            for reason in DropReason.allCases where counters[reason] > 0 { reasons[reason.name] = counters[reason] }
            statistics.reasons = reasons
        }
    }

    private static func answer(
        _ request: ControlRequest, peer: ControlPeer, store: FlowTableStore, registry: InstanceRegistry,
        clients: ClientSockets, cooperation: CooperationService, published: PublishedStatistics, queue: UInt16, logger: Logger
    ) -> ControlResponse {
        switch request.command {
        case .bind:
            guard let aid = request.aid, let port = request.initialPort, let transport = request.transport else {
                return ControlResponse(error: "a bind request needs aid, initialPort and transport", errorCode: "EINVAL")
            }
            switch registry.bind(aid: aid, initialPort: port, transport: transport, pid: peer.pid, now: MonotonicClock.milliseconds) {
            case .allocated(let virtualPort):
                logger.info("instance bound", metadata: [
                    "aid": "\(aid)", "port": "\(port)/\(transport)", "virtual-port": "\(virtualPort)", "pid": "\(peer.pid)",
                ])
                return ControlResponse(virtualPort: virtualPort)
            case .exhausted:
                logger.warning("virtual port range exhausted: bind refused", metadata: [
                    "aid": "\(aid)", "port": "\(port)/\(transport)", "pid": "\(peer.pid)",
                ])
                return ControlResponse(error: "the virtual port range is exhausted (every port has an instance); widen virtual-ports, stop an instance, or set allocation: {when-exhausted: wait}", errorCode: "EADDRINUSE")
            case .refused(let reason):
                logger.warning("bind refused", metadata: ["aid": "\(aid)", "pid": "\(peer.pid)", "reason": "\(reason)"])
                return ControlResponse(error: reason, errorCode: "EADDRNOTAVAIL")
            }
        case .connect:
            // The local and cooperative modes route this socket's connection by its AID.
            guard let aid = request.aid, let text = request.localAddress, let address = IPAddress(text),
                  let port = request.localPort, let transport = request.transport else {
                return ControlResponse(error: "a connect registration needs aid, localAddress, localPort and transport", errorCode: "EINVAL")
            }
            clients.register(transport: transport == "udp" ? .udp : .tcp, address: address, port: port, aid: aid,
                             now: MonotonicClock.milliseconds())
            return ControlResponse()
        case .apps:
            let flows = store.withLock { $0.snapshot() }
            let records = registry.snapshot().map { entry in
                AppRecord(aid: entry.aid, transport: entry.transport, initialPort: entry.initialPort,
                          virtualPort: entry.virtualPort, origin: entry.fromConfiguration ? "config" : "exec",
                          processes: entry.processes,
                          connections: flows.filter { $0.aid == entry.aid && $0.virtualPort == entry.virtualPort && $0.state != .closed }.count)
            }
            return ControlResponse(applications: records)
        case .flows:
            let now = MonotonicClock.milliseconds()
            let flows = store.withLock { $0.snapshot() }.map { FlowRecord($0, now: now) }
            return ControlResponse(flows: flows)
        case .stats:
            var statistics = published.withLock { $0 }
            statistics.negotiations = cooperation.serverCounts
            if let kernel = KernelQueueStatistics.read(queue: queue) {
                statistics.kernelQueueDropped = kernel.queueDropped
                statistics.kernelUserDropped = kernel.userDropped
            }
            return ControlResponse(statistics: statistics)
        }
    }

    static func endpoint(_ address: IPAddress, _ port: UInt16) -> String {
        address.isIPv4 ? "\(address):\(port)" : "[\(address)]:\(port)"
    }
}

extension FlowRecord {
    init(_ translation: Translation, now: UInt64) {
        let key = translation.key
        self.init(
            transport: key.transport == .tcp ? "tcp" : "udp",
            state: translation.state.rawValue, mode: translation.mode.rawValue,
            client: "\(key.client)", clientPort: key.clientPort, server: "\(key.server)",
            initialPort: key.initialPort, virtualPort: translation.virtualPort, aid: translation.aid,
            peer: translation.peer,
            age: Double(now &- translation.firstSeen) / 1000, idle: Double(now &- translation.lastSeen) / 1000,
            packetsToServer: translation.counters.packetsToServer, bytesToServer: translation.counters.bytesToServer,
            packetsToClient: translation.counters.packetsToClient, bytesToClient: translation.counters.bytesToClient)
    }
}

/// The counters the queue thread publishes for the control thread (Mutex is not copyable,
/// so it lives in a class both threads share).
final class PublishedStatistics: Sendable {
    private let mutex = Mutex(EngineStatistics())

    func withLock<Result>(_ body: (inout EngineStatistics) -> Result) -> Result {
        mutex.withLock { body(&$0) }
    }
}
