/// How long connections' first packets waited for their verdict, in fixed buckets: plain
/// integers the queue thread alone writes (like `EngineCounters`), sized once, so recording
/// costs no allocation and no lock. Held SYNs count their negotiation.
public struct LatencyHistogram: Sendable, Equatable {
    /// Upper bounds of the buckets, in microseconds, ascending; a last bucket takes the rest.
    /// From what an immediate decision costs (tens of µs) to a negotiation that timed out
    /// (seconds).
    public static let boundsMicroseconds: [UInt64] = [
        25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
        1_000_000, 2_500_000, 5_000_000,
    ]

    /// Observations per bucket (not cumulative); the last one is above every bound.
    public private(set) var buckets = [UInt64](repeating: 0, count: boundsMicroseconds.count + 1)
    public private(set) var count: UInt64 = 0
    public private(set) var sumMicroseconds: UInt64 = 0

    public init() {}

    public mutating func record(microseconds: UInt64) {
        var index = 0
        let bounds = Self.boundsMicroseconds
        while index < bounds.count && microseconds > bounds[index] { index += 1 }
        buckets[index] &+= 1
        count &+= 1
        sumMicroseconds &+= microseconds
    }

    public func adding(_ other: LatencyHistogram) -> LatencyHistogram {
        var sum = self
        for index in sum.buckets.indices { sum.buckets[index] &+= other.buckets[index] }
        sum.count &+= other.count
        sum.sumMicroseconds &+= other.sumMicroseconds
        return sum
    }
}
