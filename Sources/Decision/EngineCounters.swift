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
    /// Indexed by `DropReason.rawValue`; sized once.
    public var reasons = [UInt64](repeating: 0, count: DropReason.allCases.count)

    public init() {}

    public subscript(reason: DropReason) -> UInt64 { reasons[reason.rawValue] }

    /// The sum of two sets of counters (the decision's and the datapath's).
    public func adding(_ other: EngineCounters) -> EngineCounters {
        var sum = self
        sum.packets &+= other.packets
        sum.rewritten &+= other.rewritten
        sum.marked &+= other.marked
        sum.acceptedUnchanged &+= other.acceptedUnchanged
        sum.dropped &+= other.dropped
        sum.refused &+= other.refused
        sum.checksumIncremental &+= other.checksumIncremental
        sum.checksumRecomputed &+= other.checksumRecomputed
        sum.held &+= other.held
        for index in sum.reasons.indices { sum.reasons[index] &+= other.reasons[index] }
        return sum
    }

    public mutating func count(dropped reason: DropReason) {
        dropped &+= 1
        reasons[reason.rawValue] &+= 1
    }
}
