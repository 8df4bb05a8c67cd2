import Control
import Decision
import FlowTable
import Foundation
import Netfilter
import Packet
import Policy
import Steering
import Synchronization

/// The kernel datapath, with a source-routed TCP connection from another host neither
/// queued, translated nor tracked: the sk_lookup program (`SocketSteering`) hands it to its
/// AID's listening socket, from maps the engine keeps (`SocketDecisions`), and its packets
/// bypass conntrack (`UntrackedPorts`). Everything else (UDP, the cooperative and local
/// modes, refusals of loopback clients) goes as on the kernel datapath: the verdicts are
/// its verdicts.
struct SocketDatapath: PacketDatapath {
    var kind: Datapath { .socket }

    func installRules(_ configuration: Configuration) throws -> Bool {
        let created = try KernelDatapath().installRules(configuration)
        do { try UntrackedPorts(configuration).install() } catch {
            if created { KernelNAT.remove() }
            RuleSet.remove()
            throw ControlError("cannot install the nft table inet \(UntrackedPorts.table): \(error)")
        }
        return created
    }

    func script(_ configuration: Configuration) -> String {
        KernelDatapath().script(configuration) + "nft -f - <<'EOF'\n" + UntrackedPorts(configuration).script + "EOF\n"
            + "# and the sk_lookup program, attached and pinned by vpm run (docs/datapaths.md)\n"
    }

    func session(_ context: DatapathContext) throws -> any DatapathSession {
        try SocketSession(context)
    }

    func verdict(for decision: Decision, packet: inout IPPacket?, payload: UnsafeMutableRawBufferPointer,
                 checksum: ChecksumState, counters: inout EngineCounters) -> Verdict {
        KernelDatapath().verdict(for: decision, packet: &packet, payload: payload, checksum: checksum, counters: &counters)
    }
}

/// One `vpm run` of the socket datapath: the kernel datapath's session (its maps decide UDP
/// only), the untracked ports' table, and the sk_lookup program, whose maps a thread of its
/// own keeps in step with the instances: every 100 ms, and every 5 ms while an instance bound
/// in the last 10 s has no socket in the map yet (its program is about to listen).
final class SocketSession: DatapathSession, @unchecked Sendable {
    private let context: DatapathContext
    private let kernel: KernelSession
    /// Set by `installRules` on the engine's thread before the other threads run.
    private var decisions: SocketDecisions?
    private let stopping = Atomic<Bool>(false)
    private let finished = DispatchSemaphore(value: 0)
    private var running = false
    /// The program's counters when this engine started (its maps may be an earlier engine's).
    private let baseline = Mutex(SocketSteering.Counters())
    private let lastError = Mutex<String?>(nil)

    init(_ context: DatapathContext) throws {
        self.context = context
        kernel = try KernelSession(KernelDatapath(), context: context, decidedTransports: [.udp])
    }

    func installRules() throws {
        try kernel.installRules()
        // On failure, undone as a start that did not get to run undoes the kernel datapath's.
        func undo() {
            if context.installRules { UntrackedPorts.remove() }
            kernel.stop(running: false)
        }
        if context.installRules {
            do { try UntrackedPorts(context.configuration).install() } catch {
                undo()
                throw ControlError("cannot install the nft table inet \(UntrackedPorts.table): \(error) (see `vpm probe`)")
            }
        }
        let steering: SocketSteering
        do { steering = try SocketSteering() } catch {
            undo()
            throw ControlError("cannot attach the socket datapath's sk_lookup program: \(error) (see `vpm probe`; --datapath kernel needs no BPF)")
        }
        let ports = UntrackedPorts.ports(context.configuration).map { SocketSteering.PortKey(transport: $0.transport, port: $0.port) }
        do { try steering.setPorts(Set(ports)) } catch {
            steering.detach()
            undo()
            throw ControlError("cannot write the socket datapath's ports: \(error)")
        }
        if steering.mountedFilesystem {
            context.logger.notice("socket datapath: mounted a bpf filesystem on /sys/fs/bpf (none was); in a mount namespace of the engine's own (ip netns exec), the program and its maps end with the engine")
        }
        if steering.tookOver {
            context.logger.info("socket datapath: took over the sk_lookup program and maps an earlier engine left", metadata: ["pins": "\(steering.pinDirectory)"])
        }
        let counters = steering.counters()
        baseline.withLock { $0 = counters }
        decisions = SocketDecisions(steering: steering, registry: context.registry, logger: context.logger)
        let steered = Set(ports.map(\.port))
        let registry = context.registry, sources = context.sources, logger = context.logger
        kernel.observeSockets(ports: steered) {
            let connections: [SocketDiagnostics.Connection]
            do { connections = try SocketDiagnostics.tcpConnections(localPorts: steered) } catch {
                logger.warning("socket datapath: cannot read the sockets of steered connections: vpm flows keeps them as last read", metadata: ["error": "\(error)"])
                return nil
            }
            return SocketFlows.observe(connections: connections, closed: steering.takeClosedConnections(),
                                       matcher: SourceMatcher(sources().configuration.sources), instances: registry.instances(),
                                       nowNanoseconds: MonotonicClock.nanoseconds())
        }
    }

    func start() {
        kernel.start()
        guard let decisions else { return }
        update(decisions)
        running = true
        let thread = Thread { [self] in
            defer { finished.signal() }
            var logged = sinceStart()
            var lastLog: UInt64 = 0
            while !stopping.load(ordering: .relaxed) {
                update(decisions)
                // At most a line a second, however fast the loop turns.
                let now = MonotonicClock.milliseconds()
                if MonotonicClock.elapsed(since: lastLog, now: now) >= 1000 {
                    lastLog = now
                    logRefusals(decisions, since: &logged)
                }
                usleep(decisions.waitingForSockets(now: MonotonicClock.milliseconds()) ? 5_000 : 100_000)
            }
        }
        thread.name = "vpm-steering"
        thread.start()
    }

    /// The program's maps name the new instance's port before its program listens, so the
    /// observer puts the socket in its slot as it does, and no client meets the gap a
    /// periodic update would leave (up to 100 ms of refusals).
    func instanceBound() {
        // Not once the engine is stopping: its last update stands (and with
        // --keep-connections, is what the next engine takes over).
        guard let decisions, !stopping.load(ordering: .relaxed) else { return }
        update(decisions)
    }

    /// UDP runs on the kernel datapath's NAT here: its conntrack entry goes.
    func forget(_ flow: FlowKey) { kernel.forget(flow) }

    private func update(_ decisions: SocketDecisions) {
        let (generation, configuration) = context.sources()
        let error = decisions.update(configuration: configuration, sources: generation, now: MonotonicClock.milliseconds())
        lastError.withLock { last in
            if let error, last == nil {
                context.logger.warning("cannot update the socket datapath's rules: new source-routed TCP connections follow the last rules written (retrying every 5 s)",
                                       metadata: ["error": "\(error)"])
                last = error
            } else if error == nil, last != nil {
                context.logger.notice("socket datapath's rules up to date again")
                last = nil
            }
        }
    }

    /// The program's refusals since the last line, in the queue threads' words.
    private func logRefusals(_ decisions: SocketDecisions, since logged: inout SocketSteering.Counters) {
        let now = sinceStart()
        let count = (now.refusedNoRule &+ now.refusedNoSocket &+ now.refusedAddress)
            &- (logged.refusedNoRule &+ logged.refusedNoSocket &+ logged.refusedAddress)
        guard count > 0, let last = decisions.steering.lastRefusal() else { return }
        logged = now
        context.logger.notice("refused connections", metadata: [
            "count": "\(count)",
            "last-client": "\(last.client.endpoint(last.clientPort))",
            "port": "\(last.port)",
            "reason": "\((last.noRule ? DropReason.noApplication : DropReason.noInstance).name)",
        ])
    }

    func refreshFlows() { kernel.refreshFlows() }

    func housekeeping() { kernel.housekeeping() }

    func followsSources(of generation: UInt64) -> Bool {
        guard kernel.followsSources(of: generation), let decisions else { return false }
        update(decisions)
        return decisions.follows(sources: generation)
    }

    /// The kernel maps' UDP decisions and the program's steered connections, from this start.
    var flowsDecidedInKernel: UInt64 {
        kernel.flowsDecidedInKernel &+ sinceStart().steered
    }

    var refusedInKernel: [DropReason: UInt64] {
        let counters = sinceStart()
        return [.noApplication: counters.refusedNoRule, .noInstance: counters.refusedNoSocket &+ counters.refusedAddress]
    }

    private func sinceStart() -> SocketSteering.Counters {
        guard let now = decisions?.steering.counters() else { return SocketSteering.Counters() }
        let start = baseline.withLock { $0 }
        func less(_ value: UInt64, _ base: UInt64) -> UInt64 { value >= base ? value - base : value }
        return SocketSteering.Counters(steered: less(now.steered, start.steered), refusedNoRule: less(now.refusedNoRule, start.refusedNoRule),
                                       refusedNoSocket: less(now.refusedNoSocket, start.refusedNoSocket),
                                       refusedAddress: less(now.refusedAddress, start.refusedAddress))
    }

    func stop(running engineRan: Bool) {
        if running {
            stopping.store(true, ordering: .relaxed)
            finished.wait()
        }
        let keeping = engineRan && context.keepConnections
        if !keeping, context.installRules || engineRan {
            // Accepted connections never depended on the program: they go on.
            decisions?.steering.detach()
            if context.installRules { UntrackedPorts.remove() }
        }
        kernel.stop(running: engineRan)
    }
}
