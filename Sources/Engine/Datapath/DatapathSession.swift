import Control
#if canImport(Glibc)
import Glibc
#endif
import Decision
import FlowTable
import Logging
import Netfilter
import Packet
import Policy
import Steering
import Synchronization

/// One `vpm run` of a datapath: what it sets up around the queue loop and takes down after
/// (rules, tables, and for the kernel datapath conntrack's accounting and sync). The engine
/// calls these in order and never asks which datapath it runs.
protocol DatapathSession: AnyObject, Sendable {
    /// Installs the rules (and tables) for the configuration; throws after undoing its part.
    func installRules() throws
    /// Starts what runs beside the queue workers, once the rules are in.
    func start()
    /// `vpm flows` is about to read the flow table: bring it up to date.
    func refreshFlows()
    /// Called by the engine's main thread every 100 ms while the queues run.
    func housekeeping()
    /// Whether what the datapath keeps outside the engine follows the source rules of reload
    /// `generation` (bringing it up to date if it can); the reload waits for it.
    func followsSources(of generation: UInt64) -> Bool
    /// An instance has just bound its virtual port, on the control thread, before its
    /// program has the answer (and so before it listens): what the datapath keeps outside
    /// the engine must know the instance by then.
    func instanceBound()
    /// A flow just removed from the table (its client address:port now belongs to another
    /// AID's socket): what the datapath keeps outside the engine must not carry it on.
    func forget(_ flow: FlowKey)
    /// Connections the kernel decided without the engine (`KernelDecisions`).
    var flowsDecidedInKernel: UInt64 { get }
    /// Connections the kernel refused without the engine, by reason (the socket datapath's
    /// program: no AID, no instance socket).
    var refusedInKernel: [DropReason: UInt64] { get }
    /// Takes down what `installRules` and `start` set up. `running`: the engine got as far
    /// as running its workers (a start-up that failed earlier leaves a killed engine's
    /// state alone).
    func stop(running: Bool)
}

extension DatapathSession {
    /// The queue's datapaths decide each connection's first packet with the registry as it
    /// is then: nothing to do.
    func instanceBound() {}
    /// The queue's datapaths keep no flow outside the table: nothing to do.
    func forget(_ flow: FlowKey) {}
}

/// What a session needs from the engine.
struct DatapathContext {
    var configuration: Configuration
    var store: SharedFlowTable
    var registry: InstanceRegistry
    /// The configuration in force and its reload generation (0: as started).
    var sources: @Sendable () -> (generation: UInt64, configuration: Configuration)
    /// False: the operator installs the rules (`vpm run --no-rules`); the session leaves them.
    var installRules: Bool
    /// A stop leaves the connections to the next engine: the kernel datapath's keep running,
    /// the userspace datapath's wait (their packets are queued to nobody and dropped, so TCP
    /// retransmits) for the next engine, which restores their flows.
    var keepConnections: Bool
    /// Userspace datapath: where the flow table is saved for the next engine (`FlowSnapshot`).
    var snapshotPath: String
    var logger: Logger
}

/// The userspace datapath's session: its iptables rules, removed at stop, and the flow
/// table saved for the next engine (`FlowSnapshot`): restored at start, written each second
/// in which flows came, went or changed state, and at stop.
final class UserspaceSession: DatapathSession, @unchecked Sendable {
    private let context: DatapathContext
    private let datapath: UserspaceDatapath
    /// Main thread only (start, housekeeping, stop).
    private var lastSave: UInt64 = 0
    /// How long the last save took (milliseconds): the next waits ten times as long, so a
    /// large table's snapshot costs at most a tenth of a core.
    private var lastSaveCost: UInt64 = 0
    private var savedMembership: [UInt64] = []

    init(_ datapath: UserspaceDatapath, context: DatapathContext) {
        self.datapath = datapath
        self.context = context
    }

    func installRules() throws {
        guard context.installRules else { return }
        // A socket datapath's engine before this one (killed, or stopped to keep its
        // connections) left its program steering on rules nobody updates: not beside this one.
        SocketSteering.removePins()
        UntrackedPorts.remove()
        _ = try datapath.installRules(context.configuration)
    }

    func start() {
        let path = context.snapshotPath
        do {
            guard let snapshot = try FlowSnapshot.read(from: path) else { return }
            let restored = snapshot.restore(into: context.store, now: MonotonicClock.milliseconds())
            context.logger.info("flows restored from the last engine", metadata: [
                "flows": "\(restored.flows)", "stale": "\(restored.stale)", "invalid": "\(restored.invalid)",
                "table-full": "\(restored.refused)", "file": "\(path)",
            ])
        } catch {
            context.logger.warning("flow snapshot not restored: \(error)")
        }
    }

    func refreshFlows() {}

    func followsSources(of generation: UInt64) -> Bool { true }

    var flowsDecidedInKernel: UInt64 { 0 }

    var refusedInKernel: [DropReason: UInt64] { [:] }

    func housekeeping() {
        let now = MonotonicClock.milliseconds()
        guard MonotonicClock.elapsed(since: lastSave, now: now) >= max(1000, 10 * lastSaveCost) else { return }
        let statistics = context.store.withLock { $0.statistics }
        let membership = [statistics.inserted, statistics.removed, statistics.expired, statistics.evicted, statistics.reopened,
                          statistics.transitions]
        // Who is in the table and in which state matters for a restart (a flow saved while
        // half-open is left out until it is answered); counters move all the time.
        guard membership != savedMembership || MonotonicClock.elapsed(since: lastSave, now: now) >= 30_000 else { return }
        save(now: now)
        savedMembership = membership
    }

    private func save(now: UInt64) {
        lastSave = now
        // A piece of the table at a time: never a copy of the whole table.
        let store = context.store
        do {
            try FlowSnapshot.write(walk: { each in try store.walk { try each($0); return true } }, now: now, to: context.snapshotPath)
        } catch {
            context.logger.warning("flow snapshot not written: \(error)")
        }
        lastSaveCost = MonotonicClock.elapsed(since: now, now: MonotonicClock.milliseconds())
    }

    func stop(running: Bool) {
        let keeping = running && context.keepConnections
        if running { save(now: MonotonicClock.milliseconds()) }
        guard context.installRules else { return }
        if keeping {
            context.logger.notice("leaving the rules in place: multiplexed connections wait, their packets dropped, until the next engine restores their flows (--keep-connections)")
        } else {
            Datapath.removeRules()
            // The connections end with the rules: nothing for the next engine to restore.
            if running { unlink(context.snapshotPath) }
        }
    }
}

/// The kernel datapath's session: conntrack accounting on, the flow table kept in step
/// with conntrack (`ConntrackSync`), the rules and the nft table; at stop, the connections
/// ended (their conntrack entries deleted) or, with `keepConnections`, left to the next engine.
final class KernelSession: DatapathSession, @unchecked Sendable {
    private let context: DatapathContext
    private let datapath: KernelDatapath
    private let accounting: ConntrackAccounting?
    private let conntrack: ConntrackSync
    private let decisions: KernelDecisions
    /// The last failure to update the decision maps, and the network rules left to the
    /// engine, each logged once when it changes.
    private let decisionReport = Mutex<(error: String?, left: Int)>((nil, 0))
    /// Written by `installRules` and `start` on the engine's thread before the control and
    /// queue threads run, read by `stop` on the same thread after they ended.
    private var createdTable = false
    private var started = false
    /// False inside the socket datapath's session, which steers TCP with its own program.
    private let decidesTCP: Bool
    /// `flowsDecidedInKernel`: the counter at start, and the last answer (kept when a read fails).
    private let decidedBaseline = Atomic<UInt64>(0)
    private let decidedLast = Mutex<UInt64>(0)

    /// `decidedTransports`: the instances whose source-routed connections the kernel's maps
    /// decide (the socket datapath steers TCP with its own program).
    init(_ datapath: KernelDatapath, context: DatapathContext, decidedTransports: Set<TransportProtocol> = [.tcp, .udp]) throws {
        self.datapath = datapath
        self.context = context
        do {
            accounting = try ConntrackAccounting.enable()
        } catch {
            context.logger.warning("cannot turn on conntrack accounting: vpm flows will show zero counters, and busy flows will look idle and expire from it", metadata: ["error": "\(error)"])
            accounting = nil
        }
        conntrack = try ConntrackSync(configuration: context.configuration, store: context.store,
                                      registry: context.registry, logger: context.logger)
        decisions = KernelDecisions(registry: context.registry, transports: decidedTransports)
        decidesTCP = decidedTransports.contains(.tcp)
    }

    func installRules() throws {
        if context.installRules {
            // As the kernel datapath itself (not inside the socket datapath's session): a socket
            // datapath's engine before this one left its program steering on rules nobody
            // updates. Its steered connections go on; new ones come to this engine's rules.
            if decidesTCP {
                SocketSteering.removePins()
                UntrackedPorts.remove()
            }
            createdTable = try datapath.installRules(context.configuration)
        }
        // An older engine's mangle chain would queue the first packet again on the REPEAT
        // that follows each verdict, forever: do not run beside one.
        if let leftover = RuleSet.olderQueueChains().first {
            if createdTable { KernelNAT.remove() }
            throw ControlError("an older vpm's queue chain is installed (\(leftover)); with it this engine's verdicts "
                + "would send every connection back to it. Remove it (`vpm rules remove`, or iptables/remove.sh), "
                + "install this version's rules (`vpm rules install --datapath kernel`, or start without --no-rules), and start again")
        }
    }

    func start() {
        // The table's counter runs on while no engine does: this engine counts from here.
        if context.installRules, let baseline = KernelNAT.decidedInKernel() {
            decidedBaseline.store(baseline, ordering: .relaxed)
        }
        // Connections that kept running while no engine was here are ours again.
        do {
            let (added, _) = try conntrack.refresh(adding: .everything)
            if added > 0 { context.logger.info("flows rebuilt from conntrack", metadata: ["flows": "\(added)"]) }
        } catch {
            context.logger.warning("cannot read conntrack: vpm flows misses the connections that ran before this start", metadata: ["error": "\(error)"])
        }
        conntrack.start()
        started = true
        // Before the control socket answers: no instance is bound before the maps are known.
        updateDecisions()
    }

    /// Socket datapath: the steered connections join conntrack's in the flow table.
    func observeSockets(ports: Set<UInt16>, _ observe: @escaping @Sendable () -> [SocketFlows.Observed]?) {
        conntrack.observeSockets(ports: ports, observe)
    }

    func refreshFlows() {
        do { try conntrack.refresh(adding: .decidedInKernel(.read())) } catch { context.logger.warning("conntrack: \(error)") }
    }

    /// Deletes the flow's conntrack entry, whose NAT would otherwise carry every later
    /// packet from the client's address:port to the instance it was decided for.
    func forget(_ flow: FlowKey) {
        let original = ConntrackTuple(source: flow.client.bytes, destination: flow.server.bytes,
                                      sourcePort: flow.clientPort, destinationPort: flow.initialPort)
        do { try Conntrack().delete(protocolNumber: flow.transport.rawValue, original: original) } catch {
            context.logger.warning("cannot delete the conntrack entry of a client port another AID now uses: its packets may still reach the old instance until the entry times out; delete it with `conntrack -D`",
                                   metadata: ["flow": "\(flow)", "error": "\(error)"])
        }
    }

    func housekeeping() { updateDecisions() }

    var refusedInKernel: [DropReason: UInt64] { [:] }

    /// `lookup`'s counter (read over netlink at each ask: `vpm stats`, a metrics scrape) less
    /// what it held when this engine started (an engine before it may have left the table).
    var flowsDecidedInKernel: UInt64 {
        // The read (microseconds, over netlink) under the lock too: two askers at once
        // (stats and a scrape) must not leave the older answer as the last one.
        decidedLast.withLock { last in
            guard let value = KernelNAT.decidedInKernel() else { return last }
            let baseline = decidedBaseline.load(ordering: .relaxed)
            last = value >= baseline ? value - baseline : value  // a table made again starts at 0
            return last
        }
    }

    func followsSources(of generation: UInt64) -> Bool {
        updateDecisions()
        return decisions.follows(sources: generation)
    }

    /// Brings the source-routed decision maps up to date (`KernelDecisions`); says once when
    /// it cannot, and when it can again.
    private func updateDecisions() {
        let (generation, configuration) = context.sources()
        let error = decisions.update(configuration: configuration, sources: generation, now: MonotonicClock.milliseconds())
        decisionReport.withLock { last in
            if let error, last.error == nil {
                context.logger.warning("cannot update the kernel's source-routed decisions: connections are decided by the engine meanwhile (retrying every 5 s)",
                                       metadata: ["error": "\(error)"])
                last.error = error
            } else if error == nil, last.error != nil, decisions.follows(sources: generation) {
                context.logger.notice("kernel's source-routed decisions up to date again", metadata: ["elements": "\(decisions.count)"])
                last.error = nil
            }
            let left = decisions.leftToEngine
            if left != last.left {
                if left > 0 {
                    context.logger.notice("network source rules beyond the kernel map's limit: their connections are decided by the engine", metadata: [
                        "limit": "\(KernelDecisions.networkLimit)", "left-to-engine": "\(left)"])
                }
                last.left = left
            }
        }
    }

    func stop(running: Bool) {
        if started { conntrack.stop() }
        let keeping = running && context.keepConnections
        if context.installRules {
            if keeping {
                context.logger.notice("leaving the rules, the nft table and conntrack's entries in place: established connections keep running, new source-routed ones to known instances are decided by the kernel, the others wait for the next engine (--keep-connections)")
            } else if !(running || createdTable) {
                RuleSet.remove()  // the table a killed engine left carries running connections
            } else {
                Datapath.removeRules()
            }
        }
        guard running && !keeping else { return }
        // Without the table the entries' NAT would go on, or not, depending on other NAT
        // rules in this namespace: end the connections as the userspace datapath does.
        do { try Conntrack().delete(mark: KernelMark.tag, mask: KernelMark.tagMask) } catch {
            context.logger.warning("cannot delete vpm's conntrack entries; remove them with `conntrack -D -m 0x50000000/0xf0000000`", metadata: ["error": "\(error)"])
        }
        accounting?.restore()
    }
}
