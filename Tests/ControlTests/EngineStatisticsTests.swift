import Control
import Foundation
import XCTest

final class EngineStatisticsTests: XCTestCase {
    /// Every key the engine writes is read back: each counter gets its own value, so a
    /// counter left out of the hand-written decoder would come back as 0 and differ.
    func testRoundTripKeepsEveryCounter() throws {
        let keys = try XCTUnwrap(JSONSerialization.jsonObject(with: JSONEncoder().encode(EngineStatistics())) as? [String: Any])
        var sent: [String: Any] = [:]
        for (index, (key, value)) in keys.sorted(by: { $0.key < $1.key }).enumerated() {
            if key == "firstVerdict" {
                sent[key] = ["bounds": [0.5], "buckets": [index, 1], "count": index + 1, "sum": 1.5]
            } else {
                sent[key] = value is [String: Any] ? ["reason-\(index)": index + 1] : index + 1
            }
        }
        let decoded = try JSONDecoder().decode(EngineStatistics.self, from: JSONSerialization.data(withJSONObject: sent))
        let back = try XCTUnwrap(JSONSerialization.jsonObject(with: JSONEncoder().encode(decoded)) as? [String: Any])
        XCTAssertEqual(back as NSDictionary, sent as NSDictionary)
        XCTAssertGreaterThanOrEqual(sent.count, 20, "every counter of EngineStatistics: \(sent.keys.sorted())")
    }

    /// The answer of an engine that predates a counter (here `marked` and the cooperative
    /// `negotiations`, as an engine from before the kernel datapath sends it) still reads.
    func testAnAnswerWithoutNewerCountersReadsThemAsZero() throws {
        let older = #"{"packetsQueued": 12, "rewritten": 10, "dropped": 2, "flowsActive": 1, "reasons": {"malformed": 2}}"#
        let decoded = try JSONDecoder().decode(EngineStatistics.self, from: Data(older.utf8))
        var expected = EngineStatistics()
        expected.packetsQueued = 12
        expected.rewritten = 10
        expected.dropped = 2
        expected.flowsActive = 1
        expected.reasons = ["malformed": 2]
        XCTAssertEqual(decoded, expected)
    }

    /// The table is the one declaration: every number EngineStatistics holds is in it, once.
    func testEveryCounterIsDeclaredInTheTable() {
        let numbers = Mirror(reflecting: EngineStatistics()).children.filter { $0.value is UInt64 }.compactMap(\.label)
        XCTAssertEqual(Set(numbers), Set(EngineStatistics.counters.map(\.key)))
        XCTAssertEqual(EngineStatistics.counters.count, numbers.count)
        var statistics = EngineStatistics()
        for (index, counter) in EngineStatistics.counters.enumerated() { statistics[keyPath: counter.value] = UInt64(index + 1) }
        let json = try? JSONSerialization.jsonObject(with: JSONEncoder().encode(statistics)) as? [String: Any]
        for (index, counter) in EngineStatistics.counters.enumerated() {
            XCTAssertEqual(json?[counter.key] as? Int, index + 1, "\(counter.key) is written under its key")
            XCTAssertFalse(counter.help.isEmpty)
        }
    }

    func testAWrongTypeIsStillAnError() {
        XCTAssertThrowsError(try JSONDecoder().decode(EngineStatistics.self, from: Data(#"{"marked": "many"}"#.utf8)))
    }

    /// The bucket holding a quantile's observation gives its upper bound; above every bound,
    /// infinity; nothing recorded, nil. Sums add bucket by bucket.
    func testHistogramQuantilesAndSums() {
        let histogram = HistogramRecord(bounds: [0.001, 0.01], buckets: [6, 3, 1], count: 10, sum: 0.5)
        XCTAssertEqual(histogram.upperBound(quantile: 0.5), 0.001)
        XCTAssertEqual(histogram.upperBound(quantile: 0.9), 0.01)
        XCTAssertEqual(histogram.upperBound(quantile: 0.99), .infinity)
        XCTAssertNil(HistogramRecord(bounds: [0.001]).upperBound(quantile: 0.5))
        let sum = HistogramRecord().adding(histogram).adding(histogram)
        XCTAssertEqual(sum.buckets, [12, 6, 2])
        XCTAssertEqual(sum.count, 20)
        XCTAssertEqual(sum.sum, 1.0)
    }
}
