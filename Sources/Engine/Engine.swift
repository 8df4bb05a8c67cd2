import Decision
import Control
import Fleet
import FlowTable
public import Logging
import MetricsEndpoint
import Netfilter
import Packet
public import Policy
import Steering
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// `vpm run`: the queue loop, the control socket and the rules, for one configuration.
public final class Engine {
    public struct Options: Sendable {
        public var configuration: Configuration
        /// The file `configuration` came from, read again on `vpm reload` and SIGHUP.
        public var configurationPath: String?
        public var socketPath: String = ControlSocket.defaultPath
        public var installRules = true
        public var segmentationOffload = true
        public var failOpen = false
        /// Falls back to `.kernel`, then `.userspace`, with a log line, where the kernel cannot
        /// run the one asked for.
        public var datapath: Datapath = .socket
        /// On SIGINT/SIGTERM leave the rules (kernel datapath: and the nft table and
        /// conntrack's entries) as a killed engine would, so established connections survive
        /// and the next engine takes them over (an upgrade): kernel NAT keeps carrying them,
        /// or (userspace) their packets are dropped until the next engine restores their
        /// flows from the snapshot. Without it a stop ends them.
        public var keepConnections = false

        public init(configuration: Configuration) { self.configuration = configuration }
    }

    private let options: Options
    private let logger: Logger

    public init(options: Options, logger: Logger) {
        self.options = options
        self.logger = logger
    }

    /// Why this process cannot run an engine at all, or nil. `vpm run` asks before anything
    /// else it checks on the host: without the privilege each datapath would fail in turn,
    /// and the user would read about fallbacks instead of the one thing to do.
    public static func privilegeProblem() -> String? {
        NetfilterQueue.hasNetworkAdministration() ? nil
            : "vpm run needs root, or CAP_NET_ADMIN (for its rules, queues and maps): run it with sudo, or start the service (sudo systemctl start vpm)"
    }

    /// Why this host would refuse `configuration` at start, beyond the file itself (which
    /// loading checks): `vpm run` and `vpm check-config` run the same checks.
    public static func hostProblems(_ configuration: Configuration) -> [String] {
        [EphemeralPorts.read()?.problem(configuration.virtualPorts)].compactMap { $0 }
    }

    /// Runs until SIGINT or SIGTERM. Start-up failures throw after undoing what was done.
    public func run() throws {
        StopSignal.install()
        ReloadSignal.install()
        let configuration = options.configuration
        if let problem = Self.hostProblems(configuration).first { throw ControlError(problem) }
        let table = FlowTable(capacity: configuration.flowCapacity, timeouts: configuration.timeouts)
        let store = SharedFlowTable(table)
        let clients = ClientSockets()
        let slots = AIDSlots(configuration: configuration)
        let registry = InstanceRegistry(configuration: configuration, statePath: options.socketPath + ".instances",
                                        tenants: TenantBook(configuration: configuration, slots: slots, statePath: options.socketPath + ".tenants"))
        let datapath = chooseDatapath()
        // The userspace datapath gives local mode's loopback packets a queue of their own,
        // bound without GSO (RuleSet.everyPacket); the kernel datapath queues only their SYNs.
        let loopbackQueue = datapath == .userspace ? configuration.loopbackQueue : nil
        let queueNumbers = (0..<configuration.queues).map { configuration.queue + UInt16($0) } + (loopbackQueue.map { [$0] } ?? [])
        let fleet = try FleetStart.member(configuration, logger: logger)
        // Also when start-up fails below: the member's HTTP client must be shut down.
        defer { fleet?.stop() }
        // Service addresses: only the kernel datapath's NAT can put a host's address in their place.
        let services = datapath != .userspace && !(configuration.fleet?.services.isEmpty ?? true) ? ServiceRoutes() : nil
        if datapath == .userspace, let addresses = configuration.fleet?.services, !addresses.isEmpty {
            logger.warning("fleet: service addresses need the kernel datapath; connections to them are refused",
                           metadata: ["service": "\(addresses.map(\.description).joined(separator: ","))"])
        }
        let cooperation = CooperationService(configuration: configuration, store: store, registry: registry,
                                             workers: queueNumbers.count, fleet: fleet, services: services, logger: logger)
        let workers = WorkerList()
        let notifier = ServiceNotifier()
        let readyStatus = "multiplexing \(configuration.initialPorts.map(\.description).joined(separator: ", ")) for \(configuration.applications.count) applications (\(datapath) datapath)"
        let reloader = ConfigurationReloader(configuration: configuration, path: options.configurationPath, store: store,
                                             registry: registry, logger: logger, notifier: notifier, readyStatus: readyStatus)
        let session = try datapath.implementation.session(DatapathContext(
            configuration: configuration, store: store, registry: registry,
            sources: { (reloader.generation, reloader.configuration) }, installRules: options.installRules,
            keepConnections: options.keepConnections, snapshotPath: options.socketPath + ".flows", logger: logger))

        // Order matters: a second engine must fail before it touches the first one's rules,
        // so the control socket and the queues come before the rules.
        var controlGroup: UInt32?
        if let group = configuration.control.group {
            guard let gid = Caller.groupID(group) else {
                throw ControlError("the control group '\(group)' does not exist: create it (groupadd \(group)) or change control: group in the configuration")
            }
            controlGroup = gid
        }
        let service = ControlService(configuration: configuration, store: store, registry: registry, clients: clients,
                                     cooperation: cooperation, workers: workers, datapath: session, fleet: fleet, logger: logger) { trigger in
            try reloader.reload(trigger: trigger) { workers.runSources(of: $0) && session.followsSources(of: $0) }
        }
        let listener = try ControlListener(path: options.socketPath, group: controlGroup, stream: { request, peer, stream in
            switch request.command {
            case .watch: service.watch(peer: peer, stream: stream)
            case .flows: service.flows(peer: peer, stream: stream)
            default: _ = stream.send(ControlResponse(error: "\(request.command.rawValue) is not answered as a stream"))
            }
        }) { request, peer, descriptor in
            service.answer(request, peer: peer, descriptor: descriptor)
        }
        defer { listener.close() }
        for (index, number) in queueNumbers.enumerated() {
            var queueConfiguration = QueueConfiguration(queueNumber: number)
            queueConfiguration.segmentationOffload = options.segmentationOffload && number != loopbackQueue
            queueConfiguration.failOpen = options.failOpen || configuration.overload == .failOpen
            workers.append(try QueueWorker(index: index, queueConfiguration: queueConfiguration, configuration: configuration,
                                           datapath: datapath, store: store, clients: clients, registry: registry,
                                           cooperation: cooperation, reloader: reloader, logger: logger))
        }
        do { try cooperation.start() } catch {
            throw ControlError("cannot start the negotiation server: \(error) (change cooperative: listen)")
        }
        defer { cooperation.stop() }
        var metrics: MetricsServer?
        if let settings = configuration.metrics {
            do {
                metrics = try MetricsServer(host: settings.address.description, port: Int(settings.port)) {
                    service.metricsSnapshot(datapath: datapath)
                }
            } catch {
                let code = (error as? MetricsServer.BindFailure)?.code
                let cause: String
                switch code {
                case EADDRNOTAVAIL: cause = "\(settings.address) is not an address of this host (see `ip address`)"
                case EADDRINUSE: cause = "another program listens on port \(settings.port) (see `ss -ltnp sport = :\(settings.port)`)"
                case EACCES: cause = "port \(settings.port) is below 1024, which needs root or CAP_NET_BIND_SERVICE"
                default: cause = "\(error)"
                }
                throw ControlError("cannot serve metrics on \(settings.endpoint) (configuration line \(settings.line)): \(cause). Change metrics: listen, or remove it to run without metrics")
            }
        }
        defer { metrics?.stop() }
        var running = false
        try session.installRules()
        defer { session.stop(running: running) }
        session.start()
        listener.start()
        let watcher = InstanceWatcher(registry: registry, store: store, logger: logger)
        watcher.start()
        defer { watcher.stop() }
        for worker in workers.all { worker.start() }
        running = true
        // Published once the engine can negotiate: a peer that finds it can reach it.
        var publishedInstances = UInt64.max
        var preparedRevision: Int64 = -1
        fleet?.start()
        logger.info("engine running", metadata: [
            "queue": "\(configuration.queue)\(configuration.queues > 1 ? "-\(Int(configuration.queue) + configuration.queues - 1)" : "")\(loopbackQueue.map { ", loopback \($0)" } ?? "")",
            "ports": "\(configuration.initialPorts.map(\.description).joined(separator: ","))",
            "applications": "\(configuration.applications.map(\.aid.name).joined(separator: ","))",
            "socket": "\(options.socketPath)",
            "gso": "\(options.segmentationOffload)",
            "overload": "\((options.failOpen ? Overload.failOpen : configuration.overload).rawValue)",
            "datapath": "\(datapath)",
            "metrics": "\(configuration.metrics.map { "http://\($0.endpoint)/metrics" } ?? "off")",
        ])
        // Ready only now: the rules are in, the queues bound, the control socket answers.
        notifier.ready(status: readyStatus)
        // The workers run until SIGINT/SIGTERM; the first error of any ends the engine.
        // Meanwhile this thread serves SIGHUP.
        var trimCountdown = 100
        while !StopSignal.isRequested && !workers.all.contains(where: \.hasEnded) {
            if ReloadSignal.take() {
                do {
                    _ = try reloader.reload(trigger: "SIGHUP") { workers.runSources(of: $0) && session.followsSources(of: $0) }
                } catch {
                    // Logged by the reloader; the engine keeps its configuration.
                }
            }
            session.housekeeping()
            if registry.tenants.settings != nil {
                // A tenant ends with its last member.
                for aid in registry.tenants.sweep() { logger.info("tenant ended: its last vpm exec has exited", metadata: ["aid": "\(aid)"]) }
            }
            if slots.isCooling {
                // A slot given up is given again once no flow of its AID is left.
                var withFlows: Set<AID>?
                slots.sweep { aid in
                    if withFlows == nil { withFlows = Set(store.census().keys.map(\.aid)) }
                    return withFlows!.contains(aid)
                }
            }
            if let fleet, registry.generation != publishedInstances {
                publishedInstances = registry.generation
                // Tenants are this host's alone: not published.
                fleet.setInstances(FleetStart.entries(registry.instances().filter { !registry.tenants.contains($0.aid) }, engine: fleet.name))
            }
            // Hosts get their slot in the service maps as they join, not on a connection's path.
            if let fleet, let services, fleet.status.revision != preparedRevision {
                preparedRevision = fleet.status.revision
                services.prepare(fleet.peerAddresses)
            }
            // Control-plane peaks (a flood's conntrack dumps, a large flow dump) leave freed
            // memory in malloc's arenas; give it back so RSS follows the table down.
            trimCountdown -= 1
            if trimCountdown <= 0 {
                MemoryTrim.release()
                trimCountdown = 100
            }
            usleep(100_000)
        }
        StopSignal.request()
        let errors = workers.all.compactMap { $0.join() }
        notifier.stopping()
        let packets = workers.all.reduce(UInt64(0)) { $0 + $1.counters.0.packets }
        logger.info("engine stopping: removing rules and the control socket", metadata: ["packets": "\(packets)"])
        if let error = errors.first { throw ControlError(error) }
    }

    /// The datapath asked for, or the next one this kernel can carry (socket, then kernel,
    /// then userspace), with a log line saying why.
    private func chooseDatapath() -> Datapath {
        guard options.datapath != .userspace else { return .userspace }
        if let reason = Datapath.kernelUnavailableReason(configuration: options.configuration,
                                                         checkingNAT: options.installRules) {
            logger.warning("\(options.datapath) datapath unavailable, falling back to the userspace datapath", metadata: ["reason": "\(reason)"])
            return .userspace
        }
        if options.datapath == .socket, let reason = SocketSteering.unavailableReason() {
            logger.warning("socket datapath unavailable, falling back to the kernel datapath", metadata: ["reason": "\(reason)"])
            return .kernel
        }
        return options.datapath
    }
}

extension FlowRecord {
    init(_ translation: Translation, now: UInt64) {
        let key = translation.key
        self.init(
            transport: key.transport.name,
            state: translation.state.rawValue, mode: translation.mode.rawValue,
            client: "\(key.client)", clientPort: key.clientPort, server: "\(key.server)",
            initialPort: key.initialPort, virtualPort: translation.virtualPort, aid: translation.aid.name,
            peer: translation.peer,
            age: Double(MonotonicClock.elapsed(since: translation.firstSeen, now: now)) / 1000, idle: Double(MonotonicClock.elapsed(since: translation.lastSeen, now: now)) / 1000,
            packetsToServer: translation.counters.packetsToServer, bytesToServer: translation.counters.bytesToServer,
            packetsToClient: translation.counters.packetsToClient, bytesToClient: translation.counters.bytesToClient)
    }
}

/// The queue workers, filled during start-up and read by the control thread.
final class WorkerList: Sendable {
    private let workers = Mutex<[QueueWorker]>([])

    func append(_ worker: QueueWorker) { workers.withLock { $0.append(worker) } }
    var all: [QueueWorker] { workers.withLock { $0 } }

    /// Whether every running worker decides with the source rules of reload `generation`.
    func runSources(of generation: UInt64) -> Bool {
        all.allSatisfy { $0.runsSources(of: generation) || $0.hasEnded }
    }
}
