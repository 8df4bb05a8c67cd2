import Control
import Decision
import Fleet
import FlowTable
import Logging
import MetricsEndpoint
import Packet
import Policy
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The engine's side of the control socket, request by request: who may ask what
/// (docs/security.md), instances' binds and their clients' connect registrations, and the
/// flow table, instances and counters for `vpm flows`, `vpm apps` and `vpm stats`. The
/// listener (Control) runs each connection on a thread of its own and calls `answer`.
final class ControlService: Sendable {
    /// The configuration in force (a reload may add or remove applications).
    private var configuration: Configuration { registry.configuration }
    private let store: SharedFlowTable
    private let registry: InstanceRegistry
    private var tenants: TenantBook { registry.tenants }
    private let clients: ClientSockets
    private let cooperation: CooperationService
    private let workers: WorkerList
    private let datapath: any DatapathSession
    private let fleet: FleetMember?
    private let logger: Logger
    /// `vpm reload`: re-reads the configuration file; what changed, or throws why nothing did.
    private let reload: @Sendable (_ trigger: String) throws -> String
    /// Any local user can ask and be refused: their lines are rate-limited.
    private let refusedRequests = LogLimiter()
    /// `vpm flows --watch` connections now open (each holds a thread and a cursor).
    private let watchers = Atomic<Int>(0)
    static let maximumWatchers = 8
    /// `vpm flows` answers being streamed: each walks the whole table at its reader's pace.
    private let flowReaders = Atomic<Int>(0)
    static let maximumFlowReaders = 8

    init(configuration: Configuration, store: SharedFlowTable, registry: InstanceRegistry, clients: ClientSockets,
         cooperation: CooperationService, workers: WorkerList, datapath: any DatapathSession, fleet: FleetMember?, logger: Logger,
         reload: @escaping @Sendable (_ trigger: String) throws -> String) {
        self.reload = reload
        self.fleet = fleet
        self.store = store
        self.registry = registry
        self.clients = clients
        self.cooperation = cooperation
        self.workers = workers
        self.datapath = datapath
        self.logger = logger
    }

    /// Each queue's own counters (the queue-scoped rows of `EngineStatistics.counters`, the
    /// kernel's drops for that queue, reasons), by queue number.
    private func queueStatistics() -> [(queue: UInt16, statistics: EngineStatistics)] {
        workers.all.map { worker in
            let number = worker.queueNumber
            let (counters, queue) = worker.counters
            var statistics = EngineStatistics()
            for (key, value) in EngineCounters.fields { statistics[key: key] = counters[keyPath: value] }
            statistics.receiveBufferOverruns = queue.receiveBufferOverruns
            if let kernel = KernelQueueStatistics.read(queue: number) {
                statistics.kernelQueueDropped = kernel.queueDropped
                statistics.kernelUserDropped = kernel.userDropped
            }
            for reason in DropReason.allCases where counters[reason] > 0 { statistics.reasons[reason.identifier] = counters[reason] }
            statistics.firstVerdict = HistogramRecord(counters.firstVerdict)
            return (number, statistics)
        }
    }

    /// What `vpm stats` shows: the queues' counters summed, the flow table's, negotiations.
    private func statistics(queues: [(queue: UInt16, statistics: EngineStatistics)]) -> EngineStatistics {
        var statistics = EngineStatistics()
        for (_, counters) in queues {
            for counter in EngineStatistics.counters where counter.scope == .queue {
                statistics[keyPath: counter.value] += counters[keyPath: counter.value]
            }
            statistics.reasons.merge(counters.reasons, uniquingKeysWith: +)
            statistics.firstVerdict = statistics.firstVerdict.adding(counters.firstVerdict)
        }
        let flows = store.withLock { $0.statistics }
        statistics.flowsActive = UInt64(flows.active)
        statistics.flowsInserted = flows.inserted
        statistics.flowsExpired = flows.expired
        statistics.flowsEvicted = flows.evicted
        statistics.flowsRefusedFull = flows.refusedFull
        statistics.flowCapacity = UInt64(flows.capacity)
        statistics.flowsDecidedInKernel = datapath.flowsDecidedInKernel
        for (reason, count) in datapath.refusedInKernel where count > 0 {
            statistics.reasonsInKernel[reason.identifier] = count
            statistics.flowsRefusedInKernel &+= count
        }
        statistics.negotiations = cooperation.serverCounts
        statistics.fleet = fleet.map(fleetRecord)
        return statistics
    }

    private func fleetRecord(_ fleet: FleetMember) -> FleetRecord {
        let status = fleet.status
        return FleetRecord(name: fleet.name, connected: status.connected, lostSince: status.lostSince, lastError: status.lastError,
                           trouble: status.trouble, engines: status.engines, instances: status.instances, ignored: status.ignored, revision: status.revision)
    }

    /// One scrape of the metrics endpoint: the same counters as `vpm stats`, per queue where
    /// each queue keeps its own, with flows per AID and mode and the virtual ports.
    func metricsSnapshot(datapath: Datapath) -> MetricsSnapshot {
        let queues = queueStatistics()
        let census = store.census()
        let inUse = Set(registry.snapshot().map(\.virtualPort)).count
        return MetricsSnapshot(
            version: VPMVersion.current, datapath: datapath.rawValue, queues: queues, total: statistics(queues: queues),
            flows: census.map { .init(aid: $0.key.aid.name, mode: $0.key.mode.rawValue, count: $0.value) }
                .sorted { ($0.aid, $0.mode) < ($1.aid, $1.mode) },
            virtualPortsInUse: inUse, virtualPortsFree: configuration.virtualPorts.count - inUse)
    }

    /// One request from `peer` (with the descriptor it sent, for a bind), answered.
    func answer(_ request: ControlRequest, peer: ControlPeer, descriptor: Int32?) -> ControlResponse {
        // An instance or a client registers for an AID the configuration names, whoever asks.
        if request.command == .bind || request.command == .connect {
            guard let name = request.aid, let aid = AID(name), configuration.application(aid) != nil || tenants.contains(aid) else {
                let known = configuration.applications.map(\.aid.name).joined(separator: ", ")
                return ControlResponse(error: "AID '\(request.aid ?? "")' is not in the configuration (applications: \(known.isEmpty ? "none" : known)) nor a live tenant",
                                       errorCode: "EINVAL")
            }
            // A tenant's instances and clients register only through a `vpm exec` that joined
            // it, whoever asks (root too): a process of one tenant cannot speak for another.
            if tenants.contains(aid), !tenants.isMember(peer.pid, of: aid) {
                logger.log(limitedBy: refusedRequests, level: .warning, "control request refused", metadata: [
                    "command": "\(request.command.rawValue)", "aid": "\(aid)", "uid": "\(peer.uid)", "pid": "\(peer.pid)",
                    "reason": "not a member of the tenant",
                ])
                return ControlResponse(error: "permission denied: process \(peer.pid) has not joined tenant \(aid) (vpm exec --aid \(aid) joins it, as its owner)",
                                       errorCode: "EACCES")
            }
        }
        // Root and the engine's own user may do anything; everyone else what the
        // configuration grants (docs/security.md).
        if peer.uid != 0 && peer.uid != getuid() {
            let caller = Caller(peer)
            let refusal: String?
            switch request.command {
            case .flows, .stats, .apps, .watch:
                refusal = configuration.readRefusal(for: caller)
            case .reload:
                refusal = "only root (or the engine's own user) may reload the configuration: run vpm reload with sudo"
            case .rotateKey:
                refusal = "only root (or the engine's own user) may rotate the engine's fleet key: run vpm rotate-key with sudo"
            case .bind, .connect:
                refusal = configuration.readRefusal(for: caller)
                    ?? request.aid.flatMap(AID.init).flatMap { configuration.registrationRefusal(aid: $0, for: caller) }
            case .tenant:
                // The tenants: section says who may make one; a tenant's owner may join it.
                refusal = configuration.readRefusal(for: caller)
            }
            if let refusal {
                logger.log(limitedBy: refusedRequests, level: .warning, "control request refused", metadata: [
                    "command": "\(request.command.rawValue)", "aid": "\(request.aid ?? "-")", "uid": "\(peer.uid)", "pid": "\(peer.pid)",
                    "reason": "\(refusal)",
                ])
                return ControlResponse(error: refusal, errorCode: "EACCES")
            }
        }
        switch request.command {
        case .bind:
            guard let aid = request.aid.flatMap(AID.init), let port = request.initialPort, let transport = request.transport,
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
            // Ports another program holds are never handed out; one that turns out to be held
            // at bind time (not listed yet: bound, not listening) is skipped and the next tried.
            var skipped: Set<UInt16> = []
            var attempts = 0
            while true {
                attempts += 1
                let allocation = registry.bind(aid: aid, initialPort: port, transport: protocolName, pid: pid,
                                               avoiding: { SocketTable.read().ports(protocolName).union(skipped) },
                                               now: MonotonicClock.milliseconds)
                guard case .allocated(let virtualPort) = allocation else { return answerBind(allocation, aid: aid, port: port, transport: protocolName, pid: pid) }
                switch InstanceSocket(descriptor: descriptor).adopt(address: address, virtualPort: virtualPort, transport: protocolName) {
                case .success(let inode):
                    registry.attach(inode: inode, aid: aid, virtualPort: virtualPort, transport: protocolName)
                case .failure(.system("bind", EADDRINUSE)) where attempts < 8
                    && registry.discardIfUnused(aid: aid, virtualPort: virtualPort, transport: protocolName):
                    logger.warning("virtual port held by another program: skipped", metadata: ["aid": "\(aid)", "virtual-port": "\(virtualPort)"])
                    skipped.insert(virtualPort)
                    continue
                case .failure(.unsuitable(let reason)):
                    return ControlResponse(error: "cannot bind this socket for AID \(aid): \(reason)", errorCode: "EINVAL")
                case .failure(.system(let call, let code)):
                    let name = code == EADDRINUSE ? "EADDRINUSE" : code == EACCES ? "EACCES" : "EADDRNOTAVAIL"
                    logger.warning("instance socket not bound", metadata: [
                        "aid": "\(aid)", "virtual-port": "\(virtualPort)", "call": "\(call)", "error": "\(String(cString: strerror(code)))",
                    ])
                    let draining = code == EADDRINUSE && registry.isDraining(aid: aid, virtualPort: virtualPort, transport: protocolName)
                    let hint = draining
                        ? " (connections of this AID's previous instance still use the port while they drain; set SO_REUSEADDR on the socket to listen again meanwhile)"
                        : code == EADDRINUSE ? " (another program holds the port: see `ss -lnp sport = :\(virtualPort)`)" : ""
                    return ControlResponse(error: "\(call) of virtual port \(virtualPort) failed: \(String(cString: strerror(code)))" + hint,
                                           errorCode: name)
                }
                datapath.instanceBound()
                logger.info("instance bound", metadata: [
                    "aid": "\(aid)", "port": "\(port)/\(transport)", "virtual-port": "\(virtualPort)", "pid": "\(pid)",
                ])
                return ControlResponse(virtualPort: virtualPort)
            }
        case .connect:
            // The local and cooperative modes route this socket's connection by its AID. The
            // registration carries the socket itself, and its address:port is read from it, so
            // a caller registers only a socket it holds, never another user's port.
            guard let aid = request.aid.flatMap(AID.init), let name = request.transport else {
                return ControlResponse(error: "a connect registration needs aid and transport", errorCode: "EINVAL")
            }
            guard let transport = TransportProtocol(name: name) else {
                return ControlResponse(error: "transport must be tcp or udp, not '\(name)'", errorCode: "EINVAL")
            }
            guard let descriptor else {
                return ControlResponse(error: "a connect registration carries the program's socket (SCM_RIGHTS); is vpm exec older than the engine?", errorCode: "EINVAL")
            }
            guard var local = InstanceSocket(descriptor: descriptor).boundEndpoint(transport: transport), local.port != 0 else {
                return ControlResponse(error: "the socket is not a bound \(transport.name) socket", errorCode: "EINVAL")
            }
            if local.address == .any || local.address == IPAddress(ipv4: 0) {
                guard let remote = request.remoteAddress.flatMap(IPAddress.init), let source = InstanceSocket.routeSource(to: remote) else {
                    return ControlResponse(error: "cannot tell the socket's local address: give remoteAddress", errorCode: "EINVAL")
                }
                local.address = source
            }
            // A UDP socket of another AID may have held this address:port moments ago, and its
            // flow (the kernel's NAT) would carry this socket's datagrams to that AID's
            // instance: no handshake ends it. TCP's new SYN starts a flow of its own.
            if transport == .udp, let remote = request.remoteAddress.flatMap(IPAddress.init), let remotePort = request.remotePort {
                let key = FlowKey(transport: .udp, client: local.address, clientPort: local.port, server: remote, initialPort: remotePort)
                let (kept, stale) = store.keepsFlow(key, of: aid)
                if !kept {
                    // Also when the table has no flow there: its entry may have expired before
                    // conntrack's (a stream's 3 minutes). Deleting nothing costs one request.
                    datapath.forget(key)
                }
                if let stale {
                    logger.info("client port taken over by another AID: its old flow removed", metadata: [
                        "flow": "\(key)", "old-aid": "\(stale.aid)", "aid": "\(aid)",
                    ])
                }
            }
            clients.register(transport: transport, address: local.address, port: local.port, aid: aid,
                             now: MonotonicClock.milliseconds())
            return ControlResponse()
        case .apps where request.fleet == true:
            guard let fleet else {
                return ControlResponse(error: "this engine is not in a fleet: its configuration has no fleet: section (docs/fleet.md)")
            }
            let view = fleet.view
            let engines = Dictionary(view.engines.values.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
            // Instances whose engine has no live entry serve no one: left out, as peers leave them.
            var response = ControlResponse()
            response.fleetInstances = view.instances.values.compactMap { instance in
                engines[instance.engine].map {
                    FleetInstanceRecord(engine: instance.engine, addresses: $0.addresses, aid: instance.aid,
                                        initialPort: instance.port, transport: instance.transport)
                }
            }.sorted()
            response.fleet = fleetRecord(fleet)
            return response
        case .apps:
            // Connections per instance, counted in one walk: not a scan of the table per instance.
            var connections: [InstanceKey: Int] = [:]
            store.walk { flows in
                for flow in flows where flow.state != .closed {
                    connections[InstanceKey(aid: flow.aid, virtualPort: flow.virtualPort), default: 0] += 1
                }
                return true
            }
            let records = registry.snapshot().map { entry in
                AppRecord(aid: entry.aid.name, transport: entry.transport.name, initialPort: entry.initialPort,
                          virtualPort: entry.virtualPort, origin: entry.fromConfiguration ? "config" : "exec",
                          processes: entry.processes,
                          connections: connections[InstanceKey(aid: entry.aid, virtualPort: entry.virtualPort)] ?? 0,
                          draining: entry.isDraining)
            }
            return ControlResponse(applications: records)
        case .flows:
            // Kernel datapath: conntrack has the current states and counters.
            datapath.refreshFlows()
            let now = MonotonicClock.milliseconds()
            let flows = store.snapshot().map { FlowRecord($0, now: now) }
            return ControlResponse(flows: flows)
        case .watch:
            return ControlResponse(error: "watch streams: send it on a connection of its own")
        case .stats:
            let statistics = statistics(queues: queueStatistics())
            return ControlResponse(statistics: statistics)
        case .reload:
            do { return ControlResponse(message: try reload("vpm reload (pid \(peer.pid))")) } catch {
                return ControlResponse(error: "\(error)")
            }
        case .tenant:
            return tenant(request, peer: peer)
        case .rotateKey:
            guard let fleet else {
                return ControlResponse(error: "this engine is not in a fleet: its configuration has no fleet: section (docs/fleet.md)")
            }
            do {
                let publicKey = try fleet.rotateKey()
                var message = "new fleet key \(publicKey) in \(fleet.settings.keyFile); peers' requests signed with the previous one are honoured for \(fleet.settings.leaseSeconds) s"
                if !fleet.status.connected {
                    // Nobody can learn the new key meanwhile: say what that costs.
                    message += "\netcd is out of reach: the new key is published when this engine's session returns; "
                        + "until the peers see it they know only the previous one, and after \(fleet.settings.leaseSeconds) s "
                        + "their requests to this engine and its requests to them are refused (vpm stats shows the fleet's state)"
                }
                return ControlResponse(message: message)
            } catch {
                return ControlResponse(error: "\(error) (the engine keeps its key)")
            }
        }
    }

    /// `vpm exec --new-aid` makes a tenant; `vpm exec --aid TENANT` joins one. Either way
    /// the asking process holds the tenant until it exits.
    private func tenant(_ request: ControlRequest, peer: ControlPeer) -> ControlResponse {
        let caller = Caller(peer)
        let outcome: TenantBook.Outcome
        if let name = request.aid {
            guard let aid = AID(name) else { return ControlResponse(error: AID.problem(with: name) ?? "not an AID", errorCode: "EINVAL") }
            guard configuration.application(aid) == nil else {
                return ControlResponse(error: "AID \(aid) is in the configuration, not a tenant: vpm exec --aid \(aid) runs it as configured", errorCode: "EINVAL")
            }
            outcome = tenants.join(aid, caller: caller, pid: peer.pid, surroundings: tenants.surroundings(of: peer.pid))
        } else {
            outcome = tenants.make(caller: caller, pid: peer.pid, configured: { configuration.application($0) != nil })
        }
        switch outcome {
        case .joined(let aid):
            logger.info(request.aid == nil ? "tenant made" : "tenant joined", metadata: [
                "aid": "\(aid)", "uid": "\(peer.uid)", "pid": "\(peer.pid)", "tenants": "\(tenants.tenants.count)",
            ])
            var response = ControlResponse()
            response.aid = aid.name
            return response
        case .refused(var reason):
            if reason.contains("neither in the configuration nor a live tenant") {
                let known = configuration.applications.map(\.aid.name).joined(separator: ", ")
                reason += "; the configuration's applications: \(known.isEmpty ? "none" : known)"
            }
            logger.log(limitedBy: refusedRequests, level: .warning, "tenant refused", metadata: [
                "aid": "\(request.aid ?? "(new)")", "uid": "\(peer.uid)", "pid": "\(peer.pid)", "reason": "\(reason)",
            ])
            return ControlResponse(error: reason, errorCode: "EACCES")
        }
    }

    /// `vpm flows --watch`: the flow table's events on `stream` until the peer hangs up.
    /// A first empty line says the watch started; then, every 200 ms with something to say,
    /// one line with the events since the last (and how many were lost, should this watcher
    /// fall behind the ring). On the kernel datapath conntrack is read every second, so
    /// state changes show within about a second.
    func watch(peer: ControlPeer, stream: ControlStream) {
        guard mayRead(peer: peer, command: .watch, stream: stream) else { return }
        guard watchers.add(1, ordering: .relaxed).newValue <= Self.maximumWatchers else {
            watchers.subtract(1, ordering: .relaxed)
            _ = stream.send(ControlResponse(error: "too many watchers (\(Self.maximumWatchers) at once): stop one of the running `vpm flows --watch`"))
            return
        }
        defer { watchers.subtract(1, ordering: .relaxed) }
        var cursor = store.withLock { $0.startWatching() }
        defer { store.withLock { $0.stopWatching() } }
        guard stream.send(ControlResponse(events: [])) else { return }
        var refreshed = MonotonicClock.milliseconds()
        while !stream.peerClosed {
            usleep(200_000)
            var now = MonotonicClock.milliseconds()
            if now - refreshed >= 1000 {
                datapath.refreshFlows()
                refreshed = now
                now = MonotonicClock.milliseconds()
            }
            let (events, lost, next) = store.withLock { $0.events(from: cursor) }
            cursor = next
            guard !events.isEmpty || lost > 0 else { continue }
            let records = events.map { event in
                FlowEventRecord(event: event.kind.rawValue, sequence: event.sequence, flow: FlowRecord(event.translation, now: now))
            }
            guard stream.send(ControlResponse(events: records, lost: lost > 0 ? lost : nil)) else { return }
        }
    }

    /// `vpm flows`: the table a piece at a time (`SharedFlowTable.walk`), each piece one
    /// line written by hand (`FlowRecord.appendPiece`), so neither the engine nor the line
    /// grows with the table; every line but the last says `more`. A piece goes out once the
    /// next is known, so the last one can say it is the last.
    func flows(peer: ControlPeer, stream: ControlStream) {
        guard mayRead(peer: peer, command: .flows, stream: stream) else { return }
        guard flowReaders.add(1, ordering: .relaxed).newValue <= Self.maximumFlowReaders else {
            flowReaders.subtract(1, ordering: .relaxed)
            _ = stream.send(ControlResponse(error: "too many vpm flows at once (\(Self.maximumFlowReaders)): try again when one has finished"))
            return
        }
        defer { flowReaders.subtract(1, ordering: .relaxed) }
        stream.setSendTimeout(seconds: 30)
        // Kernel datapath: conntrack has the current states and counters.
        datapath.refreshFlows()
        var line: [UInt8] = []
        var pending: [Translation] = []
        // Ages and idle times as of each piece's copy, not the walk's start: a million flows
        // take their reader seconds.
        var copied = MonotonicClock.milliseconds()
        var delivered = true
        store.walk { flows in
            let now = MonotonicClock.milliseconds()
            if !pending.isEmpty {
                line.removeAll(keepingCapacity: true)
                FlowRecord.appendPiece(pending.lazy.map { [copied] in FlowRecord($0, now: copied) }, more: true, to: &line)
                delivered = stream.send(line: line)
            }
            pending = flows
            copied = now
            return delivered
        }
        guard delivered else {
            logger.debug("vpm flows: the reader hung up or stopped reading (30 s) before the last flows", metadata: ["pid": "\(peer.pid)"])
            return
        }
        line.removeAll(keepingCapacity: true)
        FlowRecord.appendPiece(pending.lazy.map { [copied] in FlowRecord($0, now: copied) }, more: false, to: &line)
        _ = stream.send(line: line)
    }

    /// For the streamed answers: whether `peer` may read the table; if not, says why on
    /// `stream` (and in the log, rate-limited, as `answer` does).
    private func mayRead(peer: ControlPeer, command: ControlRequest.Command, stream: ControlStream) -> Bool {
        guard peer.uid != 0 && peer.uid != getuid(), let refusal = configuration.readRefusal(for: Caller(peer)) else { return true }
        logger.log(limitedBy: refusedRequests, level: .warning, "control request refused", metadata: [
            "command": "\(command.rawValue)", "aid": "-", "uid": "\(peer.uid)", "pid": "\(peer.pid)", "reason": "\(refusal)",
        ])
        _ = stream.send(ControlResponse(error: refusal, errorCode: "EACCES"))
        return false
    }

    /// The answer to a bind that got no virtual port.
    private func answerBind(_ allocation: InstanceRegistry.Allocation, aid: AID, port: UInt16, transport: TransportProtocol, pid: Int32) -> ControlResponse {
        switch allocation {
        case .allocated(let virtualPort): return ControlResponse(virtualPort: virtualPort)
        case .exhausted:
            logger.warning("virtual port range exhausted: bind refused", metadata: [
                "aid": "\(aid)", "port": "\(port)/\(transport)", "pid": "\(pid)",
            ])
            return ControlResponse(error: "the virtual port range is exhausted (every port has an instance); widen virtual-ports, stop an instance, or set allocation: {when-exhausted: wait}", errorCode: "EADDRINUSE")
        case .refused(let reason):
            logger.warning("bind refused", metadata: ["aid": "\(aid)", "pid": "\(pid)", "reason": "\(reason)"])
            return ControlResponse(error: reason, errorCode: "EADDRNOTAVAIL")
        }
    }
}

/// An instance as `vpm apps` counts its connections: its AID and virtual port.
private struct InstanceKey: Hashable {
    var aid: AID
    var virtualPort: UInt16
}

extension HistogramRecord {
    /// The wire form of a queue thread's histogram: microseconds become seconds.
    init(_ histogram: LatencyHistogram) {
        self.init(bounds: LatencyHistogram.boundsMicroseconds.map { Double($0) / 1_000_000 }, buckets: histogram.buckets,
                  count: histogram.count, sum: Double(histogram.sumMicroseconds) / 1_000_000)
    }
}
