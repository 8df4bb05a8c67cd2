import Decision
import FlowTable
import Foundation
import Logging
import Packet
import Policy
import Steering
import Synchronization

/// Socket datapath: the source-routed decisions, compiled into the sk_lookup program's maps
/// (`SocketSteering`), and the instances' listening sockets put in its socket map.
///
/// One rule per source rule and initial port whose AID has an accepting TCP instance there,
/// pointing at the instance's slot (`SteeringSlot`, a function of its virtual port). The slot
/// holds the instance's listening socket itself, copied from its process by inode
/// (`ProcessSocket`) and closed again at once: the entry leaves the map when the instance's
/// socket closes, so a dead instance's clients are refused at once, and nothing here keeps a
/// socket alive. For a `vpm exec` instance only the sockets the engine bound and marked
/// (`InstanceSocket`) qualify; for one of the configuration, any listener on its port.
///
/// Each pass updates the rules before it fills the slots, from one view of the registry: a
/// virtual port given to another AID's instance gets its new socket only once no rule of the
/// old AID points there.
final class SocketDecisions: Sendable {
    private struct State {
        var installed: Set<SteeringRule>?
        var routes: UInt64 = 0
        var sources: UInt64 = 0
        var failedAt: UInt64?
        /// The TCP ports the maps may name (rules' slots, the instances' map): withheld from
        /// new instances (`InstanceRegistry.withhold`).
        var withheld: Set<InstanceRegistry.PortKey> = []
        /// Slot → the inode of the socket put there.
        var filled: [UInt32: UInt64] = [:]
        /// Slots whose listener could not be copied from its process or put in the map: when
        /// that was last tried (again after 5 s), and said once each.
        var unreachable: [UInt32: UInt64] = [:]
    }

    let steering: SocketSteering
    private let registry: InstanceRegistry
    private let state = Mutex(State())
    private let logger: Logger

    init(steering: SocketSteering, registry: InstanceRegistry, logger: Logger) {
        self.steering = steering
        self.registry = registry
        self.logger = logger
    }

    /// The rules for `sources` and the accepting TCP instances; a source whose AID has no
    /// accepting instance on one of the TCP `initialPorts` leads to the vacant slot.
    static func rules(sources: [SourceRule], instances: [Instance], initialPorts: [UInt16]) -> Set<SteeringRule> {
        var byAID: [AID: [SourceRule]] = [:]
        for rule in sources { byAID[rule.aid, default: []].append(rule) }
        var rules = Set<SteeringRule>()
        struct Served: Hashable { var aid: AID, port: UInt16 }
        var served: Set<Served> = []
        for instance in instances where instance.accepting && instance.initialPort.transport == .tcp {
            served.insert(Served(aid: instance.aid, port: instance.initialPort.port))
            let slot = SteeringSlot.base(transport: .tcp, virtualPort: instance.virtualPort)
            for source in byAID[instance.aid] ?? [] {
                let (network, length, port) = source.match.components
                rules.insert(SteeringRule(transport: .tcp, initialPort: instance.initialPort.port, network: network,
                                          length: length, clientPort: port, slot: slot))
            }
        }
        for source in sources {
            let (network, length, port) = source.match.components
            for initialPort in initialPorts where !served.contains(Served(aid: source.aid, port: initialPort)) {
                rules.insert(SteeringRule(transport: .tcp, initialPort: initialPort, network: network,
                                          length: length, clientPort: port, slot: SteeringSlot.vacant))
            }
        }
        return rules
    }

    /// Brings the rules up to date when the instances or the source rules moved, then the
    /// sockets. Returns nil, or the error of an attempt made now (retried every 5 s; the
    /// rules left in place are those of the last update that worked, or none).
    @discardableResult
    func update(configuration: Configuration, sources: UInt64, now: UInt64) -> String? {
        state.withLock { state in
            let routes = registry.generation
            let entries = registry.snapshot()
            var error: String?
            let backingOff = state.failedAt.map { MonotonicClock.elapsed(since: $0, now: now) < 5000 } ?? false
            if !backingOff && (state.installed == nil || state.routes != routes || state.sources < sources) {
                let instances = entries.map { entry in
                    Instance(aid: entry.aid, initialPort: InitialPort(port: entry.initialPort, transport: entry.transport),
                             virtualPort: entry.virtualPort, accepting: !entry.isDraining)
                }
                let wanted = Self.rules(sources: configuration.sources, instances: instances,
                                        initialPorts: configuration.initialPorts.filter { $0.transport == .tcp }.map(\.port))
                // The observer fills a slot as its socket starts listening, for the ports in
                // the instances' map.
                var ports: [SocketSteering.PortKey: (slot: UInt32, marked: Bool)] = [:]
                for entry in entries where entry.transport == .tcp && !entry.isDraining {
                    ports[SocketSteering.PortKey(transport: .tcp, port: entry.virtualPort)] =
                        (SteeringSlot.base(transport: .tcp, virtualPort: entry.virtualPort), entry.inodes != nil)
                }
                // A port the maps name, before or after, is given to no new instance (of another
                // AID, whose socket the observer would put where the old rules point) until
                // they no longer do.
                let newPorts = Self.ports(wanted, Set(ports.keys.map(\.port)))
                registry.withhold(state.withheld.union(newPorts), of: [.tcp])
                state.withheld.formUnion(newPorts)
                do {
                    let installed = try state.installed ?? steering.rules()
                    try steering.replaceRules(installed, with: wanted)
                    try steering.setInstances(ports)
                    registry.withhold(newPorts, of: [.tcp])
                    state.withheld = newPorts
                    state.installed = wanted
                    state.routes = routes
                    state.sources = sources
                    state.failedAt = nil
                } catch let failure {
                    try? steering.setInstances([:])
                    state.installed = nil  // read back from the map next time
                    state.failedAt = now
                    error = "\(failure)"
                }
            }
            // A socket goes into a slot only while the rules follow this view of the instances:
            // after a failed update the old AID's rules may still point at a port the registry
            // has given to another AID. Slots of instances that are gone are emptied regardless.
            let consistent = state.installed != nil && state.routes == routes
            fill(entries, &state, adding: consistent, now: now)
            return error
        }
    }

    private static func ports(_ rules: Set<SteeringRule>, _ instancePorts: Set<UInt16>) -> Set<InstanceRegistry.PortKey> {
        Set(rules.filter { $0.slot != SteeringSlot.vacant }.map { InstanceRegistry.PortKey(transport: .tcp, port: UInt16(truncatingIfNeeded: ($0.slot & 0x1FFFF) >> 1)) })
            .union(instancePorts.map { InstanceRegistry.PortKey(transport: .tcp, port: $0) })
    }

    /// Whether the rules follow source rules of reload `generation` (or later).
    func follows(sources generation: UInt64) -> Bool {
        state.withLock { $0.installed != nil && $0.sources >= generation }
    }

    /// Whether an instance bound in the last 10 s has no socket in the map yet (its program
    /// is about to listen): the caller looks again soon. Not an instance of the
    /// configuration, nor one whose program never listens: those are looked at as usual.
    func waitingForSockets(now: UInt64) -> Bool {
        state.withLock { state in
            registry.snapshot().contains { entry in
                guard entry.transport == .tcp, !entry.isDraining, entry.lastBind > 0,
                      MonotonicClock.elapsed(since: entry.lastBind, now: now) < 10_000 else { return false }
                let base = SteeringSlot.base(transport: .tcp, virtualPort: entry.virtualPort)
                // One that cannot be reached is retried every 5 s, not looked at every 5 ms.
                return state.filled[base] == nil && state.filled[base + 1] == nil
                    && state.unreachable[base] == nil && state.unreachable[base + 1] == nil
            }
        }
    }

    /// Puts each accepting TCP instance's listening sockets (IPv4 and IPv6) in its slots.
    private func fill(_ entries: [InstanceRegistry.Entry], _ state: inout State, adding: Bool, now: UInt64) {
        // The listeners on the instances' ports, by family (sock_diag, filtered by state in
        // the kernel: the host's connections cost nothing here).
        let ports = Set(entries.filter { $0.transport == .tcp && !$0.isDraining }.map(\.virtualPort))
        var byFamily: [[UInt16: [UInt64]]] = [[:], [:]]
        do {
            for socket in try SocketDiagnostics.tcpListeners(localPorts: ports) {
                byFamily[socket.isIPv6 ? 1 : 0][socket.localPort, default: []].append(socket.inode)
            }
        } catch {
            logger.warning("socket datapath: cannot list the instances' listeners", metadata: ["error": "\(error)"])
            return
        }
        let listeners = [(byFamily[0], UInt32(0)), (byFamily[1], UInt32(1))]
        var wanted: Set<UInt32> = []
        for entry in entries where entry.transport == .tcp && !entry.isDraining {
            let base = SteeringSlot.base(transport: .tcp, virtualPort: entry.virtualPort)
            for (table, offset) in listeners {
                let slot = base + offset
                var candidates = table[entry.virtualPort] ?? []
                if let inodes = entry.inodes { candidates = candidates.filter(inodes.contains) }
                guard !candidates.isEmpty else {
                    state.filled[slot] = nil
                    continue
                }
                wanted.insert(slot)
                if let inode = state.filled[slot], candidates.contains(inode), steering.socketCookie(slot: slot) != nil { continue }
                state.filled[slot] = nil
                guard adding else {
                    steering.clearSocket(slot: slot)
                    continue
                }
                if let tried = state.unreachable[slot], MonotonicClock.elapsed(since: tried, now: now) < 5000 { continue }
                var copied = false
                defer {
                    if state.filled[slot] != nil {
                        state.unreachable[slot] = nil
                    } else {
                        if state.unreachable[slot] == nil {
                            logger.warning(copied ? "socket datapath: cannot put an instance's listening socket in the socket map: its clients are refused (retried every 5 s)"
                                : "socket datapath: cannot take a copy of an instance's listening socket from its process: its clients are refused (the engine needs CAP_SYS_PTRACE for another user's process; retried every 5 s)", metadata: [
                                "aid": "\(entry.aid)", "virtual-port": "\(entry.virtualPort)", "pids": "\(entry.processes.map(\.pid))"])
                        }
                        state.unreachable[slot] = now
                    }
                }
                for inode in candidates {
                    guard let copy = ProcessSocket.copy(inode: inode, preferring: entry.processes.map(\.pid)) else { continue }
                    copied = true
                    defer { close(copy) }
                    // A vpm exec instance's socket is one the engine bound and marked.
                    if entry.inodes != nil, InstanceSocket(descriptor: copy).currentMark != InstanceSocket.mark { continue }
                    do {
                        try steering.setSocket(copy, slot: slot)
                        state.filled[slot] = inode
                        logger.debug("instance socket steered", metadata: [
                            "aid": "\(entry.aid)", "virtual-port": "\(entry.virtualPort)", "slot": "\(slot)"])
                    } catch {
                        logger.debug("cannot steer to an instance's socket", metadata: [
                            "aid": "\(entry.aid)", "virtual-port": "\(entry.virtualPort)", "error": "\(error)"])
                    }
                    break
                }
            }
        }
        // Slots of instances that are gone or draining: nothing may reach them.
        for slot in Set(state.filled.keys).subtracting(wanted) {
            steering.clearSocket(slot: slot)
            state.filled[slot] = nil
            state.unreachable[slot] = nil
        }
    }
}
