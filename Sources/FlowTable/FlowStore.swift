/// The flow table's storage and algorithms, as a value held by `FlowTable`.
///
/// A struct so that each table call is one exclusive access to it: a mutating method
/// reaches the arrays inside with static exclusivity, where methods of the class would
/// pay a runtime access check on every array touch (a third of the packet path, measured).
struct FlowStore {
    let capacity: Int
    var timeouts: FlowTimeouts
    /// Flows in the table now.
    var count = 0

    // Slot storage. A slot index is an Int32 so that links and handles stay small.
    // `slots` grows by append up to `capacity` (reserved in init, so it never reallocates);
    // a removed slot goes on the free list and is reused first.
    var slots: [Slot] = []
    // Kept apart from `slots` so that `Slot` is trivial (no reference counting when moved).
    /// Nil for a free slot.
    var aids: [AID?] = []
    var peers: [String?] = []
    var freeHead: Int32 = Slot.none

    // The key index (FlowStore+Index.swift): each bucket is 0 (empty) or
    // hash32 << 32 | (slot + 1).
    var buckets: [UInt64]
    let bucketMask: Int
    /// Keys of the index's hash, drawn from the system's random source.
    let seeds: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64)

    // One LRU list per state (FlowState.listIndex): head is the least recently seen.
    var listHeads: [Int32]
    var listTails: [Int32]

    var inserted: UInt64 = 0
    var expired: UInt64 = 0
    var evicted: UInt64 = 0
    var refusedFull: UInt64 = 0
    var removed: UInt64 = 0
    var reopened: UInt64 = 0
    var transitions: UInt64 = 0
    /// Recent events, while someone watches (`vpm flows --watch`); nil otherwise.
    var journal: FlowJournal?

    init(capacity: Int, timeouts: FlowTimeouts) {
        precondition(capacity > 0 && capacity < Int(Int32.max), "flow table capacity must be 1...\(Int32.max - 1), not \(capacity)")
        self.capacity = capacity
        self.timeouts = timeouts
        // At most half full keeps linear probes short at any fill level.
        var bucketCount = 8
        while bucketCount < capacity * 2 { bucketCount *= 2 }
        buckets = Array(repeating: 0, count: bucketCount)
        bucketMask = bucketCount - 1
        var random = SystemRandomNumberGenerator()
        seeds = (random.next(), random.next(), random.next(), random.next(), random.next(), random.next())
        listHeads = Array(repeating: Slot.none, count: FlowState.count)
        listTails = Array(repeating: Slot.none, count: FlowState.count)
        slots.reserveCapacity(capacity)
        aids.reserveCapacity(capacity)
        peers.reserveCapacity(capacity)
    }

    mutating func insert(
        _ key: FlowKey, virtualPort: UInt16, aid: AID, mode: FlowMode, peer: String?, now: UInt64
    ) -> FlowTable.InsertResult {
        let hash = hash(key)
        if let slot = findSlot(key, hash: hash) {
            return .existing(handle(slot))
        }
        if count == capacity && !makeRoom(now: now) {
            refusedFull &+= 1
            return .full
        }
        let state: FlowState = key.transport == .tcp ? .opening : .udp
        let slot: Int32
        if freeHead != Slot.none {
            slot = freeHead
            let index = Int(slot)
            freeHead = slots[index].next
            slots[index].reuse(key: key, virtualPort: virtualPort, state: state, mode: mode, now: now)
            aids[index] = aid
            peers[index] = peer
        } else {
            slot = Int32(truncatingIfNeeded: slots.count)
            slots.append(Slot(key: key, virtualPort: virtualPort, state: state, mode: mode, now: now))
            aids.append(aid)
            peers.append(peer)
        }
        link(slot, to: state.listIndex)
        addToIndex(slot, hash: hash)
        count += 1
        inserted &+= 1
        journal(.new, slot)
        return .inserted(handle(slot))
    }

    /// Mutating only for the calling convention: FlowTable then passes the store by address
    /// instead of copying its 176 bytes for every packet (measured, ~10% of a lookup).
    mutating func lookup(_ key: FlowKey) -> FlowHandle? {
        findSlot(key, hash: hash(key)).map(handle)
    }

    func handle(_ slot: Int32) -> FlowHandle {
        FlowHandle(slot: slot, generation: slots[Int(slot)].generation)
    }

    func contains(_ handle: FlowHandle) -> Bool {
        let index = Int(handle.slot)
        return index >= 0 && index < slots.count
            && slots[index].isOccupied && slots[index].generation == handle.generation
    }

    func translation(at index: Int) -> Translation {
        let slot = slots[index]
        return Translation(
            key: slot.key, virtualPort: slot.virtualPort, aid: aids[index] ?? AID.unknown, mode: slot.mode,
            peer: peers[index], state: slot.state, firstSeen: slot.firstSeen,
            lastSeen: slot.lastSeen, counters: slot.counters
        )
    }

    mutating func remove(_ key: FlowKey) -> Bool {
        guard let slot = findSlot(key, hash: hash(key)) else { return false }
        release(slot)
        removed &+= 1
        return true
    }

    mutating func remove(_ handle: FlowHandle) -> Bool {
        guard contains(handle) else { return false }
        release(handle.slot)
        removed &+= 1
        return true
    }

    /// Takes `slot` out of its list and the index and puts it on the free list.
    mutating func release(_ slot: Int32) {
        let index = Int(slot)
        journal(.destroy, slot)
        unlink(slot, from: slots[index].state.listIndex)
        removeFromIndex(slot, hash: hash(slots[index].key))
        slots[index].isOccupied = false
        slots[index].generation &+= 1
        slots[index].next = freeHead
        freeHead = slot
        // Drop the references now rather than when the slot is reused. nil allocates nothing.
        aids[index] = nil
        peers[index] = nil
        count -= 1
    }

    func snapshot() -> [Translation] {
        var order: [(firstSeen: UInt64, slot: Int)] = []
        order.reserveCapacity(count)
        for index in slots.indices where slots[index].isOccupied {
            order.append((slots[index].firstSeen, index))
        }
        order.sort { ($0.firstSeen, $0.slot) < ($1.firstSeen, $1.slot) }
        return order.map { translation(at: $0.slot) }
    }

    /// The flows in the slots `range` (clamped to the table), in slot order, each with its
    /// slot's firstSeen for ordering.
    func snapshot(slots range: Range<Int>) -> [Translation] {
        let range = range.clamped(to: slots.indices)
        var flows: [Translation] = []
        for index in range where slots[index].isOccupied { flows.append(translation(at: index)) }
        return flows
    }

    /// How many flows each AID has in each mode among the slots `range`, without copying
    /// the flows.
    func census(slots range: Range<Int>, into counts: inout [FlowCensus: Int]) {
        for index in range.clamped(to: slots.indices) where slots[index].isOccupied {
            counts[FlowCensus(aid: aids[index] ?? AID.unknown, mode: slots[index].mode), default: 0] += 1
        }
    }

    /// How many flows each AID has in each mode, without copying the flows.
    func census() -> [FlowCensus: Int] {
        var counts: [FlowCensus: Int] = [:]
        census(slots: slots.indices, into: &counts)
        return counts
    }

    var statistics: FlowTableStatistics {
        var statistics = FlowTableStatistics(
            active: count, inserted: inserted, expired: expired, evicted: evicted,
            refusedFull: refusedFull, removed: removed, reopened: reopened, capacity: capacity
        )
        statistics.transitions = transitions
        return statistics
    }
}
