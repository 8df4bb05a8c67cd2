/// A histogram as `vpm stats --json` carries it: the count in each bucket (not cumulative)
/// under its upper bound in seconds, one more bucket above the last bound, the number of
/// observations and their sum. The metrics endpoint turns it into Prometheus' cumulative
/// `_bucket{le=…}` series.
public struct HistogramRecord: Codable, Sendable, Equatable {
    /// Upper bounds in seconds, ascending.
    public var bounds: [Double]
    /// `bounds.count + 1` counts; the last is above every bound.
    public var buckets: [UInt64]
    public var count: UInt64
    /// Seconds.
    public var sum: Double

    public init(bounds: [Double] = [], buckets: [UInt64]? = nil, count: UInt64 = 0, sum: Double = 0) {
        self.bounds = bounds
        self.buckets = buckets ?? [UInt64](repeating: 0, count: bounds.count + 1)
        self.count = count
        self.sum = sum
    }

    /// The sum of two histograms with the same bounds (an empty one takes the other's).
    public func adding(_ other: HistogramRecord) -> HistogramRecord {
        if bounds.isEmpty && count == 0 { return other }
        guard other.bounds == bounds else { return self }
        var total = self
        for index in total.buckets.indices where index < other.buckets.count { total.buckets[index] += other.buckets[index] }
        total.count += other.count
        total.sum += other.sum
        return total
    }

    /// The upper bound of the bucket holding the `quantile` (0…1) observation: the value is
    /// at most this; nil with no observations, +infinity above the last bound.
    public func upperBound(quantile: Double) -> Double? {
        guard count > 0 else { return nil }
        let rank = max(1, UInt64((quantile * Double(count)).rounded(.up)))
        var seen: UInt64 = 0
        for (index, value) in buckets.enumerated() {
            seen += value
            if seen >= rank { return index < bounds.count ? bounds[index] : .infinity }
        }
        return .infinity
    }
}
