import Decision
import FlowTable
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Policy
import Steering
import Synchronization

/// Tenants on demand (`tenants:`, `vpm exec --new-aid`): AIDs made at run time for one
/// process tree each, and the `vpm exec` processes that hold each one. A tenant lives while
/// one of its members (the `vpm exec` front that made or joined it, and its supervisor) is
/// alive; its instances and flows end with the processes that made them, and its kernel
/// mark AID slot is given to another tenant only once no flow of it is left.
///
/// Members are known by pidfd, opened when their request arrives (the peer is blocked on
/// the answer, so its pid cannot have been reused), so a recycled pid never keeps a tenant.
/// Shared by the control threads (make, join, the checks of binds and connects), the queue
/// threads (slots, through the registry) and the engine's main thread (`sweep`).
final class TenantBook: Sendable {
    struct Tenant: Equatable {
        var aid: AID
        var owner: UInt32
        /// Pids of the member processes (their pidfds are in `handles`).
        var members: [Int32]
    }

    /// How a process is watched: opened for a pid, asked whether it still runs, closed.
    struct Watcher: Sendable {
        var open: @Sendable (Int32) -> Int32?
        var isAlive: @Sendable (Int32) -> Bool
        var close: @Sendable (Int32) -> Void

        /// pidfds: readable once the process has exited.
        static let pidfd = Watcher(
            open: { ProcessSocket.processHandle($0) },
            isAlive: { descriptor in
                var entry = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
                return poll(&entry, 1, 0) == 0
            },
            close: { descriptor in _ = Glibc.close(descriptor) })
    }

    enum Outcome: Equatable {
        case joined(AID)
        case refused(String)
    }

    let settings: TenantSettings?
    let slots: AIDSlots
    private let watcher: Watcher
    private let name: @Sendable () -> String
    /// Where the tenants are kept across an engine restart (next to the control socket).
    private let statePath: String?
    private struct State {
        var tenants: [AID: Tenant] = [:]
        /// pidfd of each member pid.
        var handles: [Int32: Int32] = [:]
    }
    private let state = Mutex(State())

    /// `slots`: the kernel mark AID slots, shared with the configured applications.
    init(settings: TenantSettings?, slots: AIDSlots, watcher: Watcher = .pidfd, statePath: String? = nil,
         name: @escaping @Sendable () -> String = { String(format: "%08x", UInt32.random(in: 0...UInt32.max)) }) {
        self.settings = settings
        self.slots = slots
        self.watcher = watcher
        self.name = name
        self.statePath = settings == nil ? nil : statePath
        restore()
    }

    convenience init(configuration: Configuration, slots: AIDSlots, statePath: String? = nil) {
        self.init(settings: configuration.tenants, slots: slots, statePath: statePath)
    }

    // MARK: - Across a restart

    /// What a restarted engine reads: each tenant with its members, each known by pid and
    /// start time (so a pid reused meanwhile is not taken for the member).
    private struct Saved: Codable {
        var aid: AID
        var owner: UInt32
        var slot: Int
        var members: [Member]
        struct Member: Codable { var pid: Int32; var started: UInt64 }
    }

    /// One save at a time, each of the book as it is then: a later change is never
    /// overwritten by an earlier snapshot.
    private let saving = Mutex(())

    /// Writes the tenants for the next engine (after every change; small: one line each).
    private func save() {
        guard let statePath else { return }
        saving.withLock { _ in
            let slots = self.slots.all
            let saved = tenants.compactMap { tenant in slots[tenant.aid].map { slot in
                Saved(aid: tenant.aid, owner: tenant.owner, slot: slot,
                      members: tenant.members.compactMap { pid in Self.startTime(pid).map { Saved.Member(pid: pid, started: $0) } })
            } }
            guard let data = try? JSONEncoder().encode(saved) else { return }
            try? data.write(to: URL(fileURLWithPath: statePath), options: .atomic)
        }
    }

    /// Takes over the tenants a previous engine left whose members still run.
    private func restore() {
        guard let statePath, let settings, let data = FileManager.default.contents(atPath: statePath),
              let saved = try? JSONDecoder().decode([Saved].self, from: data) else { return }
        state.withLock { state in
            for tenant in saved where tenant.aid.name.hasPrefix(settings.prefix + "-") && state.tenants.count < settings.limit {
                var members: [Int32] = []
                for member in tenant.members where Self.startTime(member.pid) == member.started {
                    guard let handle = watcher.open(member.pid) else { continue }
                    // Started before the pidfd was opened, and the same start time after: the same process.
                    guard Self.startTime(member.pid) == member.started else { watcher.close(handle); continue }
                    members.append(member.pid)
                    state.handles[member.pid] = handle
                }
                guard !members.isEmpty, slots.claim(tenant.slot, for: tenant.aid) else {
                    for pid in members { if let handle = state.handles.removeValue(forKey: pid) { watcher.close(handle) } }
                    continue
                }
                state.tenants[tenant.aid] = Tenant(aid: tenant.aid, owner: tenant.owner, members: members)
            }
        }
    }

    /// Field 22 of /proc/PID/stat: when the process started, in clock ticks since boot.
    static func startTime(_ pid: Int32) -> UInt64? {
        statFields(pid).flatMap { $0.count > 19 ? UInt64($0[19]) : nil }
    }

    /// The parent of `pid` (field 4 of /proc/PID/stat).
    static func parent(_ pid: Int32) -> Int32? {
        statFields(pid).flatMap { $0.count > 1 ? Int32($0[1]) : nil }
    }

    /// The fields of /proc/PID/stat from the third (the state) on: after the command's
    /// closing paren, since a command may hold spaces and parens.
    private static func statFields(_ pid: Int32) -> [Substring]? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = text.lastIndex(of: ")") else { return nil }
        return text[text.index(after: close)...].split(separator: " ")
    }

    /// Makes a tenant for `caller`, held by process `pid` (the request's peer).
    func make(caller: Caller, pid: Int32, configured: (AID) -> Bool) -> Outcome {
        guard let settings else {
            return .refused("this engine makes no tenants: its configuration has no tenants: section (docs/instances.md, \"Parallel test jobs on one host\")")
        }
        if let refusal = settings.makingRefusal(for: caller) { return .refused(refusal) }
        guard let handle = watcher.open(pid) else {
            return .refused("cannot watch process \(pid), which would hold the tenant: \(String(cString: strerror(errno)))")
        }
        let outcome: Outcome = state.withLock { state in
            guard state.tenants.count < settings.limit else {
                return .refused("\(state.tenants.count) tenants exist, the most tenants.limit allows (\(settings.limit)); wait for one to end, or raise the limit")
            }
            var aid: AID?
            let used = slots.aids
            for _ in 0..<16 {
                if let candidate = AID("\(settings.prefix)-\(name())"), state.tenants[candidate] == nil, !configured(candidate),
                   !used.values.contains(candidate) {
                    aid = candidate
                    break
                }
            }
            guard let aid else { return .refused("cannot find a fresh tenant name") }
            guard slots.take(aid) != nil else {
                return .refused("no kernel mark slot is free for a tenant (1023 AIDs, or ended ones whose flows still hold their slots); try again once those flows have closed")
            }
            state.tenants[aid] = Tenant(aid: aid, owner: caller.uid, members: [pid])
            state.handles[pid] = handle
            return .joined(aid)
        }
        if case .refused = outcome { watcher.close(handle) } else { save() }
        return outcome
    }

    /// Where a process runs: under no tenant's member, under one, or unknown (a process of
    /// its parent chain exited while it was read).
    enum Surroundings: Equatable {
        case outside
        case inside(AID)
        case unknown
    }

    /// Process `pid` of `caller` joins tenant `aid`: only its owner (or root) may, and not
    /// from inside another tenant (`surroundings`, from `surroundings(of: pid)`).
    func join(_ aid: AID, caller: Caller, pid: Int32, surroundings: Surroundings) -> Outcome {
        let refusal: String? = state.withLock { state in
            guard let tenant = state.tenants[aid] else {
                return "AID '\(aid)' is neither in the configuration nor a live tenant (a tenant ends when its last vpm exec has exited)"
            }
            if caller.uid != 0 && caller.uid != tenant.owner {
                return "permission denied: tenant \(aid) belongs to uid \(tenant.owner); \(caller.description) may not join it"
            }
            // Root too: a job that runs as root is still one tenant, and must not cross by mistake.
            switch surroundings {
            case .inside(let inside) where inside != aid:
                return "permission denied: a process of tenant \(inside) may not join tenant \(aid)"
            case .unknown:
                return "cannot tell whether process \(pid) runs inside another tenant (a process of its parent chain exited while it was read); try again"
            default:
                return nil
            }
        }
        if let refusal { return .refused(refusal) }
        guard let handle = watcher.open(pid) else {
            return .refused("cannot watch process \(pid), which would hold the tenant: \(String(cString: strerror(errno)))")
        }
        let (outcome, spare) = state.withLock { state -> (Outcome, Bool) in
            guard state.tenants[aid] != nil else { return (.refused("tenant \(aid) has just ended"), true) }
            if let old = state.handles[pid] {
                if watcher.isAlive(old) {
                    // The same process again (for this tenant or another): its first handle stays.
                    if !state.tenants[aid]!.members.contains(pid) { state.tenants[aid]!.members.append(pid) }
                    return (.joined(aid), true)
                }
                // A member that exited, not swept yet, whose pid a new process has: the old
                // one is no member of anything any more.
                watcher.close(old)
                for other in state.tenants.keys { state.tenants[other]!.members.removeAll { $0 == pid } }
            }
            state.tenants[aid]!.members.append(pid)
            state.handles[pid] = handle
            return (.joined(aid), false)
        }
        if spare { watcher.close(handle) }
        if case .joined = outcome { save() }
        return outcome
    }

    func contains(_ aid: AID) -> Bool { state.withLock { $0.tenants[aid] != nil } }

    /// Whether process `pid` holds tenant `aid` (a supervisor's bind or connect for it).
    /// A member that exited is none, swept or not (its pid may be another process's now).
    func isMember(_ pid: Int32, of aid: AID) -> Bool {
        state.withLock { state in
            guard state.tenants[aid]?.members.contains(pid) == true, let handle = state.handles[pid] else { return false }
            return watcher.isAlive(handle)
        }
    }

    /// The tenant one of whose live members is `pid` or its nearest such ancestor, up the
    /// parent chain in /proc to pid 1. A chain that breaks (a process exited while it was
    /// read) is `.unknown`, not outside: a join is refused then, not let through.
    func surroundings(of pid: Int32, parent: (Int32) -> Int32? = TenantBook.parent) -> Surroundings {
        let members = state.withLock { state in
            var members: [Int32: AID] = [:]
            for tenant in state.tenants.values {
                for member in tenant.members where state.handles[member].map(watcher.isAlive) == true { members[member] = tenant.aid }
            }
            return members
        }
        guard !members.isEmpty else { return .outside }
        var current = pid
        for _ in 0..<4096 {
            if let aid = members[current] { return .inside(aid) }
            guard let next = parent(current) else { return .unknown }
            if next <= 1 { return .outside }
            current = next
        }
        return .unknown
    }

    var tenants: [Tenant] { state.withLock { $0.tenants.values.sorted { $0.aid < $1.aid } } }

    /// Forgets exited members; ends tenants without members (returned), whose slots cool
    /// until no flow of theirs is left (`AIDSlots.sweep`).
    func sweep() -> [AID] {
        var closing: [Int32] = []
        let ended: [AID] = state.withLock { state in
            for (pid, handle) in state.handles where !watcher.isAlive(handle) {
                closing.append(handle)
                state.handles[pid] = nil
                for aid in state.tenants.keys { state.tenants[aid]!.members.removeAll { $0 == pid } }
            }
            let ended = state.tenants.values.filter(\.members.isEmpty)
            for tenant in ended {
                state.tenants[tenant.aid] = nil
                slots.release(tenant.aid)
            }
            return ended.map(\.aid).sorted()
        }
        for handle in closing { watcher.close(handle) }
        if !closing.isEmpty { save() }
        return ended
    }
}
