import Decision
import FlowTable
import Foundation
import Logging
import Netfilter
import Packet
import Policy
import Synchronization

/// One NFQUEUE queue and its thread: receive, decide, verdict, and the housekeeping that
/// belongs to this queue's packets (held SYNs, counters). With several queues the rules
/// pick a flow's queue by its client port, the same in both directions
/// (`RuleSet.QueueTargets`), so both directions of a flow come to the same worker; the flow
/// table is shared behind its lock.
final class QueueWorker: @unchecked Sendable {
    let index: Int
    private let queue: NetfilterQueue
    private var pipeline: PacketPipeline
    private let registry: InstanceRegistry
    private let cooperation: CooperationService
    private let store: SharedFlowTable
    private let configuration: Configuration
    private let logger: Logger
    private let published = Mutex((EngineCounters(), QueueStatistics()))
    private let finished = DispatchSemaphore(value: 0)
    private let ended = Atomic<Bool>(false)
    private let failure = Mutex<String?>(nil)
    private let reloader: ConfigurationReloader
    private let refusedNegotiations = LogLimiter()
    /// The reload generation whose source rules this worker decides with.
    private let sourcesGeneration = Atomic<UInt64>(0)

    /// Binds the queue (throws before anything runs, so start-up can fail cleanly).
    init(index: Int, queueConfiguration: QueueConfiguration, configuration: Configuration, datapath: Datapath,
         store: SharedFlowTable, clients: ClientSockets, registry: InstanceRegistry, cooperation: CooperationService,
         reloader: ConfigurationReloader, logger: Logger) throws {
        self.index = index
        queue = try NetfilterQueue(queueConfiguration)
        pipeline = PacketPipeline(configuration: configuration, store: store, clients: clients, datapath: datapath)
        pipeline.updateRoutes(registry.instances(), generation: registry.generation, slots: registry.slots.all)
        self.registry = registry
        self.cooperation = cooperation
        self.reloader = reloader
        sourcesGeneration.store(reloader.generation, ordering: .relaxed)
        if reloader.generation > 0 { pipeline.updateSources(reloader.configuration.makeSourceMatcher()) }
        self.store = store
        self.configuration = configuration
        self.logger = logger
        cooperation.attach(queue.wakeup, worker: index)
    }

    /// The NFQUEUE number this worker reads.
    var queueNumber: UInt16 { queue.configuration.queueNumber }

    /// Whether this worker decides with the source rules of reload `generation` (or later).
    func runsSources(of generation: UInt64) -> Bool { sourcesGeneration.load(ordering: .acquiring) >= generation }

    /// Whether the thread has ended (stopped, or failed: `join` says why).
    var hasEnded: Bool { ended.load(ordering: .acquiring) }

    /// This worker's counters, as last published (every 200 ms).
    var counters: (EngineCounters, QueueStatistics) { published.withLock { $0 } }

    func start() {
        let thread = Thread { [self] in
            do { try run() } catch {
                failure.withLock { $0 = "\(error)" }
                logger.error("queue thread stopped", metadata: ["queue": "\(queue.configuration.queueNumber)", "error": "\(error)"])
            }
            publish()
            ended.store(true, ordering: .releasing)
            finished.signal()
        }
        thread.name = "vpm-queue-\(index)"
        thread.start()
    }

    /// Waits for the thread to end (it ends on SIGINT/SIGTERM); returns its error, if any.
    func join() -> String? {
        finished.wait()
        return failure.withLock { $0 }
    }

    private func publish() {
        published.withLock { $0 = (pipeline.counters, queue.statistics) }
    }

    private func run() throws {
        var lastHousekeeping: UInt64 = 0
        var lastLoggedRefusals: UInt64 = 0
        while !StopSignal.isRequested {
            var readiness: NetfilterQueue.Readiness = []
            if pipeline.holdsConnections {
                // A negotiation's outcome for a held SYN signals the queue's wake-up.
                readiness = try queue.waitForPacketsOrWakeup(timeoutMilliseconds: 200)
                refreshBeforeDeciding()
                if readiness.contains(.packets) {
                    let now = MonotonicClock.milliseconds(), receivedAt = MonotonicClock.microseconds()
                    try queue.drain { pipeline.process($0, now: now, receivedAt: receivedAt) }
                }
            } else {
                // Nothing awaits an answer from another thread: a blocking receive, one
                // syscall per wake-up instead of three (a round trip makes two).
                try queue.receive(timeoutMilliseconds: 200) { packet in
                    refreshBeforeDeciding()
                    return pipeline.process(packet, now: MonotonicClock.milliseconds(), receivedAt: MonotonicClock.microseconds())
                }
                // A reload is taken up within the wait's 200 ms even when no packet comes
                // (`runsSources(of:)`).
                refreshBeforeDeciding()
            }
            for (key, aid, peer) in pipeline.takeNegotiations() {
                logger.debug("negotiating", metadata: ["client": "\(key.client.endpoint(key.clientPort))", "aid": "\(aid)"])
                cooperation.negotiate(key, aid: aid, peer: peer, worker: index)
            }
            let now = MonotonicClock.milliseconds()
            let housekeeping = MonotonicClock.elapsed(since: lastHousekeeping, now: now) >= 200
            // Outcomes arrive with a wake-up; housekeeping looks too while SYNs are held, so
            // an outcome whose signal went astray waits at most 200 ms, not the time limit.
            if readiness.contains(.wakeup) || (housekeeping && pipeline.holdsConnections) {
                for outcome in cooperation.takeOutcomes(worker: index) {
                    complete(outcome)
                }
            }
            guard housekeeping else { continue }
            lastHousekeeping = now
            if index == 0 { store.withLock { _ = $0.expire(now: now, limit: 50_000) } }
            for key in pipeline.overdue(now: now, limit: UInt64(configuration.cooperation.timeoutMilliseconds) + 1000) {
                // A negotiation that never answered (its client should have): refuse it.
                pipeline.complete(key, virtualPort: nil, peer: "-", now: now) { packet, verdict in
                    queue.sendVerdict(verdict, for: packet)
                }
            }
            publish()
            if pipeline.counters.refused != lastLoggedRefusals, let refusal = pipeline.lastRefusal {
                logger.notice("refused connections", metadata: [
                    "count": "\(pipeline.counters.refused - lastLoggedRefusals)",
                    "last-client": "\(refusal.client.endpoint(refusal.clientPort))",
                    "port": "\(refusal.initialPort)",
                    "reason": "\(refusal.reason.name)",
                ])
                lastLoggedRefusals = pipeline.counters.refused
            }
        }
    }

    /// Brings the source rules and the routes up to date before a packet is decided: a
    /// reload or an instance registered while the thread waited applies to the very packet
    /// that woke it. Two atomic loads when nothing changed; a reload's rules are built here
    /// once per reload.
    @inline(__always)
    private func refreshBeforeDeciding() {
        let reloaded = reloader.generation
        if reloaded != sourcesGeneration.load(ordering: .relaxed) {
            pipeline.updateSources(reloader.configuration.makeSourceMatcher())
            sourcesGeneration.store(reloaded, ordering: .releasing)
        }
        if registry.generation != pipeline.routesGeneration {
            let generation = registry.generation
            pipeline.updateRoutes(registry.instances(), generation: generation, slots: registry.slots.all)
        }
    }

    private func complete(_ outcome: CooperationService.Outcome) {
        var virtualPort: UInt16?
        switch outcome.answer {
        case .accepted(let port):
            virtualPort = port
            logger.debug("negotiated", metadata: [
                "client": "\(outcome.key.client.endpoint(outcome.key.clientPort))", "virtual-port": "\(port)",
            ])
        case .refused(let reason), .failed(let reason):
            logger.log(limitedBy: refusedNegotiations, level: .notice, "cooperative connection refused", metadata: [
                "client": "\(outcome.key.client.endpoint(outcome.key.clientPort))",
                "server": "\(outcome.key.server.endpoint(outcome.key.initialPort))",
                "peer-engine": "\(outcome.peer)", "reason": "\(reason)",
            ])
        }
        pipeline.complete(outcome.key, virtualPort: virtualPort, peer: outcome.peer, hostSlot: outcome.hostSlot,
                          now: MonotonicClock.milliseconds()) { packet, verdict in
            queue.sendVerdict(verdict, for: packet)
        }
    }
}
