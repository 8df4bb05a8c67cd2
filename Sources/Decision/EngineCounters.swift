/// The queue thread's counters: plain integers it alone writes, published to the control
/// thread by copying (see `Engine`), so counting costs no atomic and no lock.
public struct EngineCounters: Sendable, Equatable {
    public var packets: UInt64 = 0
    public var rewritten: UInt64 = 0
    /// Kernel datapath: connections handed to kernel NAT with a decision's mark.
    public var marked: UInt64 = 0
    public var acceptedUnchanged: UInt64 = 0
    public var dropped: UInt64 = 0
    public var refused: UInt64 = 0
    public var checksumIncremental: UInt64 = 0
    public var checksumRecomputed: UInt64 = 0
    /// SYNs held while their connection was negotiated with a peer engine.
    public var held: UInt64 = 0
    /// Connection starts the decision settled (a new flow recorded, or a refusal), held ones
    /// when their negotiation ended.
    public var connectionsDecided: UInt64 = 0
    /// How long those waited for their verdict (from the start of the batch that carried the
    /// first packet); only when the caller says when the batch arrived.
    public var firstVerdict = LatencyHistogram()
    /// Indexed by `DropReason.rawValue`; sized once.
    public var reasons = [UInt64](repeating: 0, count: DropReason.allCases.count)

    public init() {}

    public subscript(reason: DropReason) -> UInt64 { reasons[reason.rawValue] }

    /// Every counter but the reasons, under the key `vpm stats` shows it by
    /// (`EngineStatistics.counters`): summing and publishing go through this one list, so a
    /// counter added here is summed and shown (a test checks every key has its row there).
    public static let fields: [(key: String, value: WritableKeyPath<EngineCounters, UInt64> & Sendable)] = [
        ("packetsQueued", \.packets), ("rewritten", \.rewritten), ("marked", \.marked),
        ("acceptedUnchanged", \.acceptedUnchanged), ("dropped", \.dropped), ("refused", \.refused),
        ("checksumIncremental", \.checksumIncremental), ("checksumRecomputed", \.checksumRecomputed), ("held", \.held),
        ("connectionsDecided", \.connectionsDecided),
    ]

    /// The sum of two sets of counters (the decision's and the datapath's).
    public func adding(_ other: EngineCounters) -> EngineCounters {
        var sum = self
        for (_, value) in Self.fields { sum[keyPath: value] &+= other[keyPath: value] }
        for index in sum.reasons.indices { sum.reasons[index] &+= other.reasons[index] }
        sum.firstVerdict = firstVerdict.adding(other.firstVerdict)
        return sum
    }

    public mutating func count(dropped reason: DropReason) {
        dropped &+= 1
        reasons[reason.rawValue] &+= 1
    }
}
