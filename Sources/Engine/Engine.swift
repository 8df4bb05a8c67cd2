import Decision
import Control
import FlowTable
public import Logging
import Netfilter
import Packet
public import Policy
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// `vpm run`: the queue loop, the control socket and the rules, for one configuration.
public final class Engine {
    public struct Options: Sendable {
        public var configuration: Configuration
        public var socketPath: String = ControlSocket.defaultPath
        public var installRules = true
        public var segmentationOffload = true
        public var failOpen = false
        /// Falls back to `.userspace`, with a log line, where the kernel cannot run `.kernel`.
        public var datapath: Datapath = .kernel
        /// Kernel datapath: on SIGINT/SIGTERM leave the rules, the nft table and conntrack's
        /// entries as a killed engine would, so established connections keep running and
        /// the next engine takes them over (an upgrade). Without it a stop ends them.
        public var keepConnections = false

        public init(configuration: Configuration) { self.configuration = configuration }
    }

    private let options: Options
    private let logger: Logger

    public init(options: Options, logger: Logger) {
        self.options = options
        self.logger = logger
    }

    /// Runs until SIGINT or SIGTERM. Start-up failures throw after undoing what was done.
    public func run() throws {
        StopSignal.install()
        let configuration = options.configuration
        if let problem = EphemeralPorts.read()?.problem(configuration.virtualPorts) { throw ControlError(problem) }
        let table = FlowTable(capacity: configuration.flowCapacity, timeouts: TableTimeouts(configuration.timeouts))
        let store = SharedFlowTable(table)
        let clients = ClientSockets()
        let registry = InstanceRegistry(configuration: configuration, statePath: options.socketPath + ".instances")
        let cooperation = CooperationService(configuration: configuration, store: store, registry: registry,
                                             workers: configuration.queues, logger: logger)
        let workers = WorkerList()
        let (datapath, accounting) = try chooseDatapath()
        let conntrack = datapath == .kernel
            ? try ConntrackSync(configuration: configuration, store: store, registry: registry, logger: logger) : nil

        // Order matters: a second engine must fail before it touches the first one's rules,
        // so the control socket and the queues come before the rules.
        var controlGroup: UInt32?
        if let group = configuration.control.group {
            guard let gid = Caller.groupID(group) else {
                throw ControlError("the control group '\(group)' does not exist: create it (groupadd \(group)) or change control: group in the configuration")
            }
            controlGroup = gid
        }
        let listener = try ControlListener(path: options.socketPath, group: controlGroup) { [options, logger] request, peer, descriptor in
            Self.answer(request, peer: peer, descriptor: descriptor, store: store, registry: registry, clients: clients, cooperation: cooperation,
                        workers: workers, conntrack: conntrack, configuration: options.configuration, logger: logger)
        }
        defer { listener.close() }
        for index in 0..<configuration.queues {
            var queueConfiguration = QueueConfiguration(queueNumber: configuration.queue + UInt16(index))
            queueConfiguration.segmentationOffload = options.segmentationOffload
            queueConfiguration.failOpen = options.failOpen
            workers.append(try QueueWorker(index: index, queueConfiguration: queueConfiguration, configuration: configuration,
                                           datapath: datapath, store: store, clients: clients, registry: registry,
                                           cooperation: cooperation, logger: logger))
        }
        do { try cooperation.start() } catch {
            throw ControlError("cannot start the negotiation server on port \(configuration.cooperation.listenPort ?? 0): \(error) (is another engine or program using it? change cooperative: listen)")
        }
        defer { cooperation.stop() }
        // Kernel datapath: a table a killed engine left behind carries running connections, so
        // a start-up that fails removes the table only if this run created it.
        var createdTable = false
        var running = false
        if options.installRules {
            // NAT before the rules that queue: a marked SYN must find its translation.
            if datapath == .kernel {
                do { createdTable = try KernelNAT(configuration).install() } catch {
                    throw ControlError("cannot install the nft table inet \(KernelNAT.table): \(error) (see `vpm probe`; --datapath userspace needs no nft)")
                }
            } else {
                KernelNAT.remove()  // a killed kernel-datapath engine's table would drop our flows
            }
            do { try RuleSet(configuration, datapath: datapath).install() } catch {
                if createdTable { KernelNAT.remove() }
                throw ControlError("cannot install the iptables rules: \(error)")
            }
        }
        defer {
            if options.installRules {
                if datapath == .kernel && running && options.keepConnections {
                    logger.notice("leaving the rules, the nft table and conntrack's entries in place: established connections keep running, new ones wait for the next engine (--keep-connections)")
                } else {
                    RuleSet.remove()
                    if datapath == .kernel && (running || createdTable) {
                        KernelNAT.remove()
                    }
                }
            }
            if datapath == .kernel && running && !options.keepConnections {
                // Without the table the entries' NAT would go on, or not, depending on other
                // NAT rules in this namespace: end the connections as the userspace datapath does.
                do { try Conntrack().delete(mark: KernelMark.tag, mask: KernelMark.tagMask) } catch {
                    logger.warning("cannot delete vpm's conntrack entries; remove them with `conntrack -D -m 0x50000000/0xf0000000`", metadata: ["error": "\(error)"])
                }
                accounting?.restore()
            }
        }
        if let conntrack {
            // Connections that kept running while no engine was here are ours again.
            do {
                let (added, _) = try conntrack.refresh(rebuild: true)
                if added > 0 { logger.info("flows rebuilt from conntrack", metadata: ["flows": "\(added)"]) }
            } catch {
                logger.warning("cannot read conntrack: vpm flows misses the connections that ran before this start", metadata: ["error": "\(error)"])
            }
            conntrack.start()
        }
        defer { conntrack?.stop() }
        listener.start()
        let watcher = InstanceWatcher(registry: registry, store: store, logger: logger)
        watcher.start()
        defer { watcher.stop() }
        for worker in workers.all { worker.start() }
        running = true
        logger.info("engine running", metadata: [
            "queue": "\(configuration.queue)\(configuration.queues > 1 ? "-\(Int(configuration.queue) + configuration.queues - 1)" : "")",
            "ports": "\(configuration.initialPorts.map(\.description).joined(separator: ","))",
            "applications": "\(configuration.applications.map(\.aid.name).joined(separator: ","))",
            "socket": "\(options.socketPath)",
            "gso": "\(options.segmentationOffload)",
            "datapath": "\(datapath)",
        ])
        // The workers run until SIGINT/SIGTERM; the first error of any ends the engine.
        let errors = workers.all.compactMap { $0.join() }
        let packets = workers.all.reduce(UInt64(0)) { $0 + $1.counters.0.packets }
        logger.info("engine stopping: removing rules and the control socket", metadata: ["packets": "\(packets)"])
        if let error = errors.first { throw ControlError(error) }
    }

    /// The datapath asked for, or the userspace one (with a log line saying why) where this
    /// kernel cannot carry the kernel datapath; for the kernel datapath, the accounting
    /// setting to restore at the end.
    private func chooseDatapath() throws -> (Datapath, ConntrackAccounting?) {
        guard options.datapath == .kernel else { return (.userspace, nil) }
        if let reason = Datapath.kernelUnavailableReason(configuration: options.configuration,
                                                         checkingNAT: options.installRules) {
            logger.warning("kernel datapath unavailable, falling back to the userspace datapath", metadata: ["reason": "\(reason)"])
            return (.userspace, nil)
        }
        do {
            return (.kernel, try ConntrackAccounting.enable())
        } catch {
            logger.warning("cannot turn on conntrack accounting: vpm flows will show zero counters, and busy flows will look idle and expire from it", metadata: ["error": "\(error)"])
            return (.kernel, nil)
        }
    }

    /// The workers' counters, summed, with the flow table's.
    private static func statistics(_ workers: [QueueWorker], store: SharedFlowTable) -> EngineStatistics {
        var statistics = EngineStatistics()
        var reasons = [UInt64](repeating: 0, count: DropReason.allCases.count)
        for worker in workers {
            let (counters, queue) = worker.counters
            statistics.packetsQueued += counters.packets
            statistics.rewritten += counters.rewritten
            statistics.marked += counters.marked
            statistics.acceptedUnchanged += counters.acceptedUnchanged
            statistics.dropped += counters.dropped
            statistics.refused += counters.refused
            statistics.checksumIncremental += counters.checksumIncremental
            statistics.checksumRecomputed += counters.checksumRecomputed
            statistics.held += counters.held
            statistics.receiveBufferOverruns += queue.receiveBufferOverruns
            for reason in DropReason.allCases { reasons[reason.rawValue] += counters[reason] }
        }
        for reason in DropReason.allCases where reasons[reason.rawValue] > 0 { statistics.reasons[reason.name] = reasons[reason.rawValue] }
        let flows = store.withLock { $0.statistics }
        statistics.flowsActive = flows.active
        statistics.flowsInserted = flows.inserted
        statistics.flowsExpired = flows.expired
        statistics.flowsEvicted = flows.evicted
        statistics.flowsRefusedFull = flows.refusedFull
        statistics.flowCapacity = flows.capacity
        return statistics
    }

    private static func answer(
        _ request: ControlRequest, peer: ControlPeer, descriptor: Int32?, store: SharedFlowTable, registry: InstanceRegistry,
        clients: ClientSockets, cooperation: CooperationService, workers: WorkerList, conntrack: ConntrackSync?,
        configuration: Configuration, logger: Logger
    ) -> ControlResponse {
        // Root and the engine's own user may do anything; everyone else what the
        // configuration grants (docs/security.md).
        if peer.uid != 0 && peer.uid != getuid() {
            let caller = Caller(peer)
            let refusal: String?
            switch request.command {
            case .flows, .stats, .apps:
                refusal = configuration.readRefusal(for: caller)
            case .bind, .connect:
                refusal = configuration.readRefusal(for: caller)
                    ?? request.aid.flatMap(AID.init).flatMap { configuration.registrationRefusal(aid: $0, for: caller) }
            }
            if let refusal {
                logger.warning("control request refused", metadata: [
                    "command": "\(request.command.rawValue)", "aid": "\(request.aid ?? "-")", "uid": "\(peer.uid)", "pid": "\(peer.pid)",
                    "reason": "\(refusal)",
                ])
                return ControlResponse(error: refusal, errorCode: "EACCES")
            }
        }
        let queue = configuration.queue
        switch request.command {
        case .bind:
            guard let aid = request.aid, let port = request.initialPort, let transport = request.transport,
                  let protocolName = TransportProtocol(name: transport) else {
                return ControlResponse(error: "a bind request needs aid, initialPort and transport (tcp or udp)", errorCode: "EINVAL")
            }
            // The engine binds the program's socket itself and marks it, so only the sockets it
            // bound for an AID ever receive that AID's clients (docs/security.md).
            guard let descriptor else {
                return ControlResponse(error: "a bind request carries the program's socket (SCM_RIGHTS); is vpm exec older than the engine? Use the vpm that runs the engine", errorCode: "EINVAL")
            }
            let address = request.localAddress.flatMap(IPAddress.init) ?? IPAddress(ipv4: 0)
            // `vpm exec`'s supervisor names the program's process; a peer may only name its own.
            let pid = request.pid.flatMap { InstanceRegistry.owner(of: $0) == peer.uid || peer.uid == 0 ? $0 : nil } ?? peer.pid
            switch registry.bind(aid: aid, initialPort: port, transport: transport, pid: pid, now: MonotonicClock.milliseconds) {
            case .allocated(let virtualPort):
                switch InstanceSocket(descriptor: descriptor).adopt(address: address, virtualPort: virtualPort, transport: protocolName) {
                case .success(let inode):
                    registry.attach(inode: inode, aid: aid, virtualPort: virtualPort, transport: transport)
                case .failure(.unsuitable(let reason)):
                    return ControlResponse(error: "cannot bind this socket for AID \(aid): \(reason)", errorCode: "EINVAL")
                case .failure(.system(let call, let code)):
                    let name = code == EADDRINUSE ? "EADDRINUSE" : code == EACCES ? "EACCES" : "EADDRNOTAVAIL"
                    logger.warning("instance socket not bound", metadata: [
                        "aid": "\(aid)", "virtual-port": "\(virtualPort)", "call": "\(call)", "error": "\(String(cString: strerror(code)))",
                    ])
                    return ControlResponse(error: "\(call) of virtual port \(virtualPort) failed: \(String(cString: strerror(code)))"
                                           + (code == EADDRINUSE ? " (another program holds the port: see `ss -lnp sport = :\(virtualPort)`)" : ""),
                                           errorCode: name)
                }
                logger.info("instance bound", metadata: [
                    "aid": "\(aid)", "port": "\(port)/\(transport)", "virtual-port": "\(virtualPort)", "pid": "\(pid)",
                ])
                return ControlResponse(virtualPort: virtualPort)
            case .exhausted:
                logger.warning("virtual port range exhausted: bind refused", metadata: [
                    "aid": "\(aid)", "port": "\(port)/\(transport)", "pid": "\(pid)",
                ])
                return ControlResponse(error: "the virtual port range is exhausted (every port has an instance); widen virtual-ports, stop an instance, or set allocation: {when-exhausted: wait}", errorCode: "EADDRINUSE")
            case .refused(let reason):
                logger.warning("bind refused", metadata: ["aid": "\(aid)", "pid": "\(pid)", "reason": "\(reason)"])
                return ControlResponse(error: reason, errorCode: "EADDRNOTAVAIL")
            }
        case .connect:
            // The local and cooperative modes route this socket's connection by its AID.
            guard let aid = request.aid, let text = request.localAddress, let address = IPAddress(text),
                  let port = request.localPort, let name = request.transport else {
                return ControlResponse(error: "a connect registration needs aid, localAddress, localPort and transport", errorCode: "EINVAL")
            }
            guard let transport = TransportProtocol(name: name) else {
                return ControlResponse(error: "transport must be tcp or udp, not '\(name)'", errorCode: "EINVAL")
            }
            clients.register(transport: transport, address: address, port: port, aid: aid,
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
            // Kernel datapath: conntrack has the current states and counters.
            if let conntrack {
                do { try conntrack.refresh() } catch { logger.warning("conntrack: \(error)") }
            }
            let now = MonotonicClock.milliseconds()
            let flows = store.withLock { $0.snapshot() }.map { FlowRecord($0, now: now) }
            return ControlResponse(flows: flows)
        case .stats:
            var statistics = Self.statistics(workers.all, store: store)
            statistics.negotiations = cooperation.serverCounts
            for index in workers.all.indices {
                if let kernel = KernelQueueStatistics.read(queue: queue + UInt16(index)) {
                    statistics.kernelQueueDropped += kernel.queueDropped
                    statistics.kernelUserDropped += kernel.userDropped
                }
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
            transport: key.transport.name,
            state: translation.state.rawValue, mode: translation.mode.rawValue,
            client: "\(key.client)", clientPort: key.clientPort, server: "\(key.server)",
            initialPort: key.initialPort, virtualPort: translation.virtualPort, aid: translation.aid,
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
}
