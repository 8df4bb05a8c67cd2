/// What the flow table has done since it was made.
public struct FlowTableStatistics: Sendable, Equatable, Hashable, Codable {
    /// Flows in the table now.
    public var active: Int
    /// Flows added by `insert`.
    public var inserted: UInt64
    /// Flows removed because they were idle past their state's timeout.
    public var expired: UInt64
    /// Unfinished flows (closed, opening, one-way UDP) dropped early to make room for a new one.
    public var evicted: UInt64
    /// New flows refused because every slot held a live, answered flow.
    public var refusedFull: UInt64
    /// Flows removed by `remove`.
    public var removed: UInt64
    /// Closed TCP flows reopened by a new SYN on the same key (client port reuse).
    public var reopened: UInt64
    /// The most flows the table holds.
    public var capacity: Int
    /// State changes of flows (opening → established, …), by packets or by an outside
    /// tracker: with the counts above, whether the table moved since a given moment.
    public var transitions: UInt64 = 0

    public init(
        active: Int = 0, inserted: UInt64 = 0, expired: UInt64 = 0, evicted: UInt64 = 0,
        refusedFull: UInt64 = 0, removed: UInt64 = 0, reopened: UInt64 = 0, capacity: Int = 0
    ) {
        self.active = active
        self.inserted = inserted
        self.expired = expired
        self.evicted = evicted
        self.refusedFull = refusedFull
        self.removed = removed
        self.reopened = reopened
        self.capacity = capacity
    }
}
