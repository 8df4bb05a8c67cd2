/// One flow's record inside `FlowTable`, without its strings: a trivial value, so moving it
/// costs no reference counting. 104 bytes.
struct Slot {
    /// "No slot" in links and list heads.
    static let none: Int32 = -1

    var key: FlowKey
    var virtualPort: UInt16
    var state: FlowState
    var mode: FlowMode
    var progress: TCPProgress
    var isOccupied: Bool
    /// Bumped when the flow is removed, so that handles to it go stale.
    var generation: UInt32
    /// Neighbours in the state's LRU list, or in the free list (`next` only).
    var previous: Int32
    var next: Int32
    var firstSeen: UInt64
    var lastSeen: UInt64
    var counters: FlowCounters

    init(key: FlowKey, virtualPort: UInt16, state: FlowState, mode: FlowMode, now: UInt64) {
        self.key = key
        self.virtualPort = virtualPort
        self.state = state
        self.mode = mode
        progress = []
        isOccupied = true
        generation = 0
        previous = Slot.none
        next = Slot.none
        firstSeen = now
        lastSeen = now
        counters = .zero
    }

    /// Makes a free slot hold a new flow, keeping its generation.
    mutating func reuse(key: FlowKey, virtualPort: UInt16, state: FlowState, mode: FlowMode, now: UInt64) {
        let generation = generation
        self = Slot(key: key, virtualPort: virtualPort, state: state, mode: mode, now: now)
        self.generation = generation
    }
}
