import Decision
import Control
import Foundation
public import Policy
import Packet
import Synchronization

/// The instances the engine routes to: those the configuration names (static virtual ports)
/// and those `vpm exec` registered, with virtual ports allocated from the configured range.
///
/// Same AID + same initial port → the same virtual port (prefork workers, SO_REUSEPORT
/// groups); another AID → another port. Shared by the control threads (bind requests) and
/// the queue thread (which rebuilds its routing tables when `generation` moves, and calls
/// `releaseUnused` from its housekeeping).
public final class InstanceRegistry: Sendable {
    struct Entry: Codable, Equatable {
        var aid: AID
        var transport: TransportProtocol
        var initialPort: UInt16
        var virtualPort: UInt16
        var fromConfiguration: Bool
        var processes: [AppRecord.Process]
        /// Monotonic milliseconds of the last bind; the socket check waits a grace period
        /// after it (a socket is invisible in /proc/net between bind() and listen()).
        var lastBind: UInt64
        /// The inodes of the sockets the engine bound for this instance: only they keep it
        /// alive, not another program's socket on its port. Nil for the configuration's
        /// instances (and registrations saved by an engine that did not record them).
        var inodes: Set<UInt64>?
        /// True while the instance drains: none of its listening sockets is left, but TCP
        /// connections it accepted still run on its port. They keep their translation (the
        /// port stays reserved, so no other instance gets it under them); new connections
        /// are not routed to it. Nil (not draining) in files of engines before it.
        var draining: Bool?

        var isDraining: Bool { draining == true }
    }

    /// A bind request's outcome.
    enum Allocation: Equatable {
        case allocated(UInt16)
        case exhausted
        case refused(String)
    }

    /// After a bind, this long before a missing socket means the instance is gone.
    static let graceMilliseconds: UInt64 = 3000

    /// The configuration in force: a reload that adds or removes applications changes it
    /// (`reconfigure`); everything else it holds needs a restart.
    private let current: Mutex<Configuration>
    var configuration: Configuration { current.withLock { $0 } }
    /// The kernel mark AID slots of the applications and the tenants.
    var slots: AIDSlots { tenants.slots }
    private let statePath: String?
    private let entries: Mutex<[Entry]>
    private let changes = Atomic<UInt64>(1)
    /// Virtual ports the kernel may still route to (`KernelDecisions`): never given to a new
    /// instance, even once released here.
    private let withheld = Mutex<Set<PortKey>>([])
    /// Kernel datapath: ports released here (by the time of release) that conntrack may still
    /// translate connections to — a UDP client that keeps sending keeps its entry, and its
    /// translation, alive. Not given to a new instance until a conntrack dump begun after the
    /// release shows no vpm connection to them (`releaseQuarantine`).
    private let quarantine = Mutex<[PortKey: UInt64]?>(nil)

    struct PortKey: Hashable {
        var transport: TransportProtocol
        var port: UInt16
    }

    /// Tenants made at run time: their AIDs may bind `tenants.ports`, and their instances
    /// carry their kernel mark slots.
    let tenants: TenantBook

    /// `statePath` keeps the `vpm exec` registrations across an engine restart, so running
    /// instances need not register again.
    convenience init(configuration: Configuration, statePath: String?) {
        self.init(configuration: configuration, statePath: statePath,
                  tenants: TenantBook(configuration: configuration, slots: AIDSlots(configuration: configuration)))
    }

    init(configuration: Configuration, statePath: String?, tenants: TenantBook) {
        current = Mutex(configuration)
        self.tenants = tenants
        self.statePath = statePath
        var entries = configuration.instances.map { instance in
            Entry(aid: instance.aid, transport: instance.initialPort.transport,
                  initialPort: instance.initialPort.port, virtualPort: instance.virtualPort,
                  fromConfiguration: true, processes: [], lastBind: 0)
        }
        entries += Self.load(statePath, configuration: configuration, taken: entries, tenants: tenants)
        self.entries = Mutex(entries)
    }

    /// Moves whenever the set of instances changes.
    public var generation: UInt64 { changes.load(ordering: .acquiring) }

    /// Every instance, for the queue thread's routing tables.
    public func instances() -> [Instance] {
        entries.withLock { entries in
            entries.map { entry in
                Instance(aid: entry.aid, initialPort: InitialPort(port: entry.initialPort, transport: entry.transport),
                         virtualPort: entry.virtualPort, accepting: !entry.isDraining)
            }
        }
    }

    /// Puts `newer` in force, unless an application it removes still has instances (their
    /// clients would lose their AID): then nothing changes and the answer says which.
    /// Removed applications give up their kernel mark slots (which cool until their flows
    /// are gone), added ones take free slots, and the queue threads rebuild their routes.
    /// Checked and swapped under the entries' lock: a bind in between cannot slip in.
    func reconfigure(_ newer: Configuration) -> String? {
        let kept = Set(newer.applications.map(\.aid))
        let outcome: (refusal: String?, older: Configuration?) = entries.withLock { entries in
            let busy = entries.filter { !kept.contains($0.aid) && !tenants.contains($0.aid) && !$0.fromConfiguration }
            guard busy.isEmpty else {
                let listed = busy.map { "\($0.aid) \($0.initialPort)/\($0.transport) (pids \($0.processes.map { "\($0.pid)" }.joined(separator: " ")))" }
                    .sorted().joined(separator: ", ")
                return ("it removes applications that still have instances: \(listed); stop them first (vpm apps lists them), or keep the applications", nil)
            }
            return (nil, current.withLock { current in defer { current = newer }; return current })
        }
        guard let older = outcome.older else { return outcome.refusal }
        for application in older.applications where !kept.contains(application.aid) { slots.release(application.aid) }
        for application in newer.applications { _ = slots.take(application.aid) }
        changes.add(1, ordering: .releasing)
        return nil
    }

    /// A `bind()` under `vpm exec`: the virtual port for (AID, initial port), allocated if new.
    /// With `when-exhausted: wait` it waits (this control connection's thread only).
    /// A new instance never gets a port in `avoiding()` (ports other programs hold; asked
    /// again on every attempt of a waiting bind).
    func bind(aid: AID, initialPort: UInt16, transport: TransportProtocol, pid: Int32, avoiding: () -> Set<UInt16> = { [] },
              now: () -> UInt64) -> Allocation {
        if tenants.contains(aid), let settings = tenants.settings {
            guard settings.ports.contains(InitialPort(port: initialPort, transport: transport)) else {
                let ports = settings.ports.map(\.description).joined(separator: ", ")
                return .refused("\(initialPort)/\(transport) is not a port tenants may use (tenants.ports: \(ports))")
            }
        } else if configuration.application(aid) == nil {
            let known = configuration.applications.map(\.aid.name).joined(separator: ", ")
            return .refused("AID '\(aid)' is not in the configuration (applications: \(known.isEmpty ? "none" : known))")
        }
        guard configuration.initialPorts.contains(where: { $0.port == initialPort && $0.transport == transport }) else {
            return .refused("\(initialPort)/\(transport) is not a multiplexed port of the configuration")
        }
        let deadline = now() + UInt64(configuration.allocation.waitTimeout) * 1000
        while true {
            var created = false
            let avoided = avoiding()
            let result: Allocation = entries.withLock { entries in
                if let index = entries.firstIndex(where: { $0.aid == aid && $0.initialPort == initialPort && $0.transport == transport }) {
                    if !entries[index].processes.contains(where: { $0.pid == pid }) {
                        entries[index].processes.append(AppRecord.Process(pid: pid, command: Self.command(of: pid)))
                    }
                    entries[index].lastBind = now()
                    // A draining instance serves again only once its new socket is bound (`attach`).
                    return .allocated(entries[index].virtualPort)
                }
                // Read under the entries' lock: a port released or discarded a moment ago is
                // already withheld or quarantined here.
                let held = withheld.withLock { $0 }.union(quarantine.withLock { $0?.keys.map { $0 } ?? [] })
                let taken = Set(entries.filter { $0.transport == transport }.map(\.virtualPort))
                    .union(held.filter { $0.transport == transport }.map(\.port))
                guard let port = configuration.virtualPorts.first(where: { !taken.contains($0) && !avoided.contains($0) }) else {
                    return .exhausted
                }
                // A reload may have removed the application meanwhile (`reconfigure` swaps
                // under this lock).
                guard current.withLock({ $0.application(aid) != nil }) || tenants.contains(aid) else {
                    return .refused("AID '\(aid)' was removed from the configuration by a reload")
                }
                entries.append(Entry(aid: aid, transport: transport, initialPort: initialPort, virtualPort: port,
                                     fromConfiguration: false, processes: [AppRecord.Process(pid: pid, command: Self.command(of: pid))],
                                     lastBind: now(), inodes: []))
                created = true
                return .allocated(port)
            }
            // Routes change only with a new instance; the state file is written by `attach`,
            // once the instance has its socket.
            if created { changes.add(1, ordering: .releasing) }
            guard result == .exhausted, configuration.allocation.whenExhausted == .wait, now() < deadline else { return result }
            usleep(100_000)
        }
    }

    /// The virtual ports the kernel datapath's decision maps may route to, from now on: a
    /// new instance gets none of them.
    /// Replaces the withheld ports of `transports` by `ports` (the socket datapath withholds
    /// its TCP ports, the kernel maps inside it their UDP ones).
    func withhold(_ ports: Set<PortKey>, of transports: Set<TransportProtocol> = [.tcp, .udp]) {
        withheld.withLock { held in
            held = held.filter { !transports.contains($0.transport) }.union(ports.filter { transports.contains($0.transport) })
        }
    }

    /// Kernel datapath: from now on a released port waits in quarantine until conntrack no
    /// longer translates to it (`releaseQuarantine`).
    func quarantineReleasedPorts() {
        quarantine.withLock { if $0 == nil { $0 = [:] } }
    }

    /// Ends the quarantine of the ports released before `dumpStarted` (monotonic ms) to which
    /// that dump found no vpm connection (`routed`: transport and virtual port of every entry).
    func releaseQuarantine(dumpStarted: UInt64, routed: Set<PortKey>) {
        quarantine.withLock { quarantine in
            guard let held = quarantine else { return }
            quarantine = held.filter { key, releasedAt in releasedAt >= dumpStarted || routed.contains(key) }
        }
    }

    /// When the most recent port in quarantine was released: a dump begun since then can end
    /// its quarantine. Nil when none waits.
    var latestQuarantine: UInt64? { quarantine.withLock { $0?.values.max() } }

    /// The ports in quarantine (for tests).
    var quarantined: Set<PortKey> { quarantine.withLock { Set($0?.keys.map { $0 } ?? []) } }

    /// Puts a released entry's port in quarantine, when that is on. Under the entries' lock.
    private func beginQuarantine(_ entry: Entry, now: UInt64) {
        quarantine.withLock { $0?[PortKey(transport: entry.transport, port: entry.virtualPort)] = now }
    }

    /// Forgets a `vpm exec` instance that has no socket yet (its first bind failed because
    /// another program holds the port); returns whether it did. A draining instance is kept:
    /// its connections still use the port.
    func discardIfUnused(aid: AID, virtualPort: UInt16, transport: TransportProtocol) -> Bool {
        let discarded = entries.withLock { entries -> Bool in
            guard let index = entries.firstIndex(where: { $0.aid == aid && $0.virtualPort == virtualPort && $0.transport == transport }),
                  !entries[index].fromConfiguration, !entries[index].isDraining, entries[index].inodes?.isEmpty ?? false
            else { return false }
            beginQuarantine(entries.remove(at: index), now: MonotonicClock.milliseconds())
            return true
        }
        if discarded { changes.add(1, ordering: .releasing) }
        return discarded
    }

    /// Records a socket the engine bound for AID's instance on `virtualPort`; a draining
    /// instance serves again from here.
    func attach(inode: UInt64, aid: AID, virtualPort: UInt16, transport: TransportProtocol) {
        let undrained = entries.withLock { entries -> Bool in
            guard let index = entries.firstIndex(where: { $0.aid == aid && $0.virtualPort == virtualPort && $0.transport == transport })
            else { return false }
            entries[index].inodes = (entries[index].inodes ?? []).union([inode])
            guard entries[index].isDraining else { return false }
            entries[index].draining = nil
            return true
        }
        if undrained { changes.add(1, ordering: .releasing) }
        save()
    }

    /// Whether AID's instance on `virtualPort` is draining.
    func isDraining(aid: AID, virtualPort: UInt16, transport: TransportProtocol) -> Bool {
        entries.withLock { entries in
            entries.contains { $0.aid == aid && $0.virtualPort == virtualPort && $0.transport == transport && $0.isDraining }
        }
    }

    /// Releases the virtual ports of `vpm exec` instances that have none of their sockets
    /// left on them (closed, their processes exited, or another program holds the port
    /// now), and forgets processes that are gone. A TCP instance whose listening sockets
    /// are gone while connections it accepted still run drains instead (`Entry.draining`)
    /// and is released once the last has ended.
    @discardableResult
    func releaseUnused(sockets: SocketTable, now: UInt64) -> Release {
        let (release, drainingChanged): (Release, Bool) = entries.withLock { entries in
            var release = Release()
            var drainingChanged = false
            var kept: [Entry] = []
            for var entry in entries {
                guard !entry.fromConfiguration, MonotonicClock.elapsed(since: entry.lastBind, now: now) >= Self.graceMilliseconds else {
                    kept.append(entry)
                    continue
                }
                let listening = sockets.contains(entry.virtualPort, transport: entry.transport, inodes: entry.inodes)
                let draining = !listening && entry.transport == .tcp && sockets.connections(on: entry.virtualPort) > 0
                if !listening && !draining {
                    release.released.append(entry)
                    beginQuarantine(entry, now: now)
                    continue
                }
                if draining != entry.isDraining {
                    entry.draining = draining ? true : nil
                    drainingChanged = true
                    if draining { release.startedDraining.append(entry) }
                }
                kept.append(entry)
            }
            entries = kept
            for index in entries.indices {
                entries[index].processes.removeAll { !Self.isAlive($0.pid) }
                // Forget the sockets that are gone (a program that binds again and again).
                if let inodes = entries[index].inodes,
                   MonotonicClock.elapsed(since: entries[index].lastBind, now: now) >= Self.graceMilliseconds {
                    entries[index].inodes = inodes.intersection(sockets.inodes(on: entries[index].virtualPort,
                                                                               transport: entries[index].transport))
                }
            }
            return (release, drainingChanged)
        }
        if !release.released.isEmpty || drainingChanged { changed() }
        return release
    }

    /// What one `releaseUnused` did.
    struct Release: Equatable {
        /// Instances released: their ports are free, their flows to be removed.
        var released: [Entry] = []
        /// Instances that stopped listening while connections still run on their ports.
        var startedDraining: [Entry] = []
    }

    /// The virtual port of AID's instance on an initial port (for a cooperative peer's
    /// request); nil when it has none, or only a draining one.
    func virtualPort(aid: AID, initialPort: UInt16, transport: TransportProtocol) -> UInt16? {
        entries.withLock { entries in
            entries.first { $0.aid == aid && $0.initialPort == initialPort && $0.transport == transport && !$0.isDraining }?.virtualPort
        }
    }

    func snapshot() -> [Entry] {
        entries.withLock { $0 }
    }

    private func changed() {
        changes.add(1, ordering: .releasing)
        save()
    }

    // MARK: - Processes

    static func command(of pid: Int32) -> String {
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline"), !data.isEmpty else { return "?" }
        return String(decoding: data, as: UTF8.self).split(separator: "\0").joined(separator: " ")
    }

    /// The real user id of a process (`Uid:` in /proc/PID/status), nil when it is gone.
    static func owner(of pid: Int32) -> UInt32? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Uid:") }) else { return nil }
        return line.split(whereSeparator: { $0 == " " || $0 == "\t" }).dropFirst().first.flatMap { UInt32($0) }
    }

    /// Alive and not a zombie.
    static func isAlive(_ pid: Int32) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return false }
        let state = stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).first
        return state != "Z" && state != "X"
    }


    // MARK: - Persistence

    private func save() {
        guard let statePath else { return }
        let registered = entries.withLock { $0.filter { !$0.fromConfiguration } }
        guard let data = try? JSONEncoder().encode(registered) else { return }
        try? data.write(to: URL(fileURLWithPath: statePath), options: .atomic)
    }

    /// Registrations of a previous engine whose sockets still exist (their instances run
    /// on), or whose accepted connections do (draining).
    private static func load(_ path: String?, configuration: Configuration, taken: [Entry], tenants: TenantBook) -> [Entry] {
        guard let path, let data = FileManager.default.contents(atPath: path),
              let saved = try? JSONDecoder().decode([Entry].self, from: data) else { return [] }
        let sockets = SocketTable.read()
        var kept: [Entry] = []
        for var entry in saved {
            let listening = sockets.contains(entry.virtualPort, transport: entry.transport, inodes: entry.inodes)
            guard configuration.virtualPorts.contains(entry.virtualPort),
                  configuration.application(entry.aid) != nil || tenants.contains(entry.aid),
                  listening || (entry.transport == .tcp && sockets.connections(on: entry.virtualPort) > 0),
                  !(taken + kept).contains(where: { $0.virtualPort == entry.virtualPort && $0.transport == entry.transport })
            else { continue }
            entry.lastBind = 0
            entry.draining = listening ? nil : true
            entry.processes.removeAll { !isAlive($0.pid) }
            kept.append(entry)
        }
        return kept
    }
}
