public import Packet

/// The set of translations: every flow the engine routes, its virtual port, AID, TCP/UDP
/// state, counters and age.
///
/// Built for the packet path. All storage is reserved in `init`; after that `lookup` and
/// `update` never allocate, and `insert`, `remove` and `expire` only retain and release the
/// AID and peer strings. Every per-packet operation is O(1) at any fill level:
/// - an open-addressing index (linear probing, at most half full, backward-shift deletion,
///   so no tombstones and no rehash) maps a key to its slot;
/// - each state keeps its flows in an intrusive doubly-linked list in last-seen order, so
///   the oldest flow of each state is at its head and expiry touches only what it removes.
///
/// Not thread-safe: the engine holds a lock around each call. Time is a parameter
/// (milliseconds of a monotonic clock).
public final class FlowTable {
    /// What `insert` did.
    public enum InsertResult: Sendable, Equatable {
        /// A new flow was recorded.
        case inserted(FlowHandle)
        /// The key already had a flow; it was left as it was.
        case existing(FlowHandle)
        /// Every slot holds a live, answered flow: the new flow is refused.
        case full

        /// The flow's handle, unless the table was full.
        public var handle: FlowHandle? {
            switch self {
            case .inserted(let handle), .existing(let handle): handle
            case .full: nil
            }
        }
    }

    /// Unchecked: every access is one call into the store, which never calls back out, so
    /// accesses cannot overlap; the runtime check cost a tenth of a lookup (measured).
    @exclusivity(unchecked) var store: FlowStore

    /// Runs `body` on the store in place. Reading `store` for a non-mutating call would copy
    /// it, retaining and releasing each of its arrays: measured, a third of a lookup.
    @inline(__always)
    func inPlace<Result>(_ body: (inout FlowStore) -> Result) -> Result {
        body(&store)
    }

    /// A table for at most `capacity` flows (1 ..< 2^31 - 1), all of its memory reserved now.
    public init(capacity: Int, timeouts: FlowTimeouts = .standard) {
        store = FlowStore(capacity: capacity, timeouts: timeouts)
    }

    /// The most flows the table holds.
    public var capacity: Int { store.capacity }

    /// Flows in the table now.
    public var count: Int { store.count }

    /// Idle timeouts per state. A change takes effect at the next `expire`.
    public var timeouts: FlowTimeouts {
        get { store.timeouts }
        set { store.timeouts = newValue }
    }

    /// Records a new flow in state `opening` (TCP) or `udp` (UDP), or returns the flow
    /// already recorded for `key` untouched (call `remove` first to replace it). When the
    /// table is full it first removes flows already expired, then drops one unfinished flow
    /// (the oldest `closed` one, else the least recently seen `opening` or one-way `udp`
    /// flow) — so a SYN flood cannot push out established flows — and else refuses.
    public func insert(
        _ key: FlowKey, virtualPort: UInt16, aid: AID, mode: FlowMode, peer: String?, now: UInt64
    ) -> InsertResult {
        store.insert(key, virtualPort: virtualPort, aid: aid, mode: mode, peer: peer, now: now)
    }

    /// The flow recorded for `key`, if any. O(1); never allocates.
    public func lookup(_ key: FlowKey) -> FlowHandle? {
        inPlace { $0.lookup(key) }
    }

    /// Accounts one packet of the flow `handle` names: advances its state with the
    /// packet's TCP flags and direction (table in FlowStore+StateMachine.swift), counts it
    /// (`bytes`: the IP packet's length), refreshes its last-seen time. Returns the virtual
    /// port and the state before and after, or nil when the handle is stale. O(1); never
    /// allocates.
    public func update(
        _ handle: FlowHandle, direction: Direction, tcpFlags: TCPFlags = [], bytes: Int, now: UInt64
    ) -> FlowUpdate? {
        store.update(handle, direction: direction, tcpFlags: tcpFlags, bytes: bytes, now: now)
    }

    /// Whether `handle` still names a flow of this table (false once the flow was removed).
    public func contains(_ handle: FlowHandle) -> Bool {
        inPlace { $0.contains(handle) }
    }

    /// The flow `handle` names. The handle must be current (see `contains`).
    public subscript(handle: FlowHandle) -> Translation {
        guard let translation = translation(handle) else {
            preconditionFailure("stale \(handle): the flow was removed (check contains(_:) or use translation(_:))")
        }
        return translation
    }

    /// The flow `handle` names, or nil when the handle is stale.
    public func translation(_ handle: FlowHandle) -> Translation? {
        inPlace { $0.contains(handle) ? $0.translation(at: Int(handle.slot)) : nil }
    }

    /// The virtual port of the flow `handle` names, or nil when the handle is stale.
    public func virtualPort(_ handle: FlowHandle) -> UInt16? {
        inPlace { $0.contains(handle) ? $0.slots[Int(handle.slot)].virtualPort : nil }
    }

    /// Removes the flow recorded for `key`; false when there was none.
    @discardableResult
    public func remove(_ key: FlowKey) -> Bool {
        store.remove(key)
    }

    /// Removes the flow `handle` names; false when the handle is stale.
    @discardableResult
    public func remove(_ handle: FlowHandle) -> Bool {
        store.remove(handle)
    }

    /// Removes flows idle past their state's timeout (`now - lastSeen >= timeout`), earliest
    /// deadline first, at most `limit` of them. Returns how many it removed. Costs
    /// O(removed + 6), whatever the size of the table.
    @discardableResult
    public func expire(now: UInt64, limit: Int = .max) -> Int {
        store.expire(now: now, limit: limit)
    }

    /// When the next flow expires if nothing refreshes it (nil when the table is empty):
    /// the time to call `expire` again.
    public var nextDeadline: UInt64? {
        inPlace { $0.nextDeadline }
    }

    /// Every flow, oldest first (by first packet). For the control plane: allocates.
    public func snapshot() -> [Translation] {
        inPlace { $0.snapshot() }
    }

    /// The flows in the slots `range`, in slot order: a piece of a walk over the table
    /// (`slotCount` slots) that holds the caller's lock for one piece at a time.
    public func snapshot(slots range: Range<Int>) -> [Translation] {
        inPlace { $0.snapshot(slots: range) }
    }

    /// Slots a walk with `snapshot(slots:)` covers: every slot used so far (slots are
    /// taken in order and reused, so at most the table's capacity).
    public var slotCount: Int {
        inPlace { $0.slots.count }
    }

    /// `census()` of the slots `range`, added to `counts`.
    public func census(slots range: Range<Int>, into counts: inout [FlowCensus: Int]) {
        inPlace { $0.census(slots: range, into: &counts) }
    }

    public var statistics: FlowTableStatistics {
        inPlace { $0.statistics }
    }

    /// Flows by AID and mode (the metrics endpoint). For the control plane: one pass over
    /// the table, no copy of the flows.
    public func census() -> [FlowCensus: Int] {
        inPlace { $0.census() }
    }
}

/// One AID in one mode: a group of `FlowTable.census()`.
public struct FlowCensus: Hashable, Sendable {
    public var aid: AID
    public var mode: FlowMode
}

extension FlowTable {
    /// Sets what an outside tracker saw of the flow `handle` names (the kernel datapath learns
    /// a flow's state and counters from conntrack, not from packets): its state and counters;
    /// when the counters moved, traffic was seen, so last-seen becomes `now` (an idle flow
    /// keeps aging toward its state's timeout). False when the handle is stale. Control
    /// plane; never allocates.
    @discardableResult
    public func observe(_ handle: FlowHandle, state: FlowState, counters: FlowCounters, now: UInt64) -> Bool {
        store.observe(handle, state: state, counters: counters, now: now)
    }
}

extension FlowStore {
    mutating func observe(_ handle: FlowHandle, state: FlowState, counters: FlowCounters, now: UInt64) -> Bool {
        guard contains(handle) else { return false }
        let index = Int(handle.slot)
        let previous = slots[index].state
        let moved = counters != slots[index].counters && now > slots[index].lastSeen
        slots[index].state = state
        slots[index].counters = counters
        if previous != state {
            transitions &+= 1
            journal(.update, handle.slot)
        }
        // Each state's list is in last-seen order, which expiry and eviction rely on: a flow
        // moves to its tail only when it was seen now (or changes list).
        if moved { slots[index].lastSeen = now }
        if moved || previous != state { move(handle.slot, from: previous.listIndex, to: state.listIndex) }
        return true
    }
}
