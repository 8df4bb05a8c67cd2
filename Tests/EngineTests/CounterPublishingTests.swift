import Control
import Decision
import XCTest

/// The queue threads' counters reach `vpm stats` through `EngineCounters.fields`: every
/// counter a thread keeps is in that list, summed, and has its row in the statistics table.
final class CounterPublishingTests: XCTestCase {
    func testEveryQueueCounterIsPublishedUnderAStatisticsKey() {
        let stored = Mirror(reflecting: EngineCounters()).children.filter { $0.value is UInt64 }.compactMap(\.label)
        XCTAssertEqual(EngineCounters.fields.count, stored.count, "every UInt64 of EngineCounters is in fields: \(stored)")
        let keys = Set(EngineStatistics.counters.map(\.key))
        for (key, _) in EngineCounters.fields {
            XCTAssertTrue(keys.contains(key), "\(key) has a row in EngineStatistics.counters")
        }
    }

    func testAddingSumsEveryFieldAndReason() {
        var one = EngineCounters()
        var two = EngineCounters()
        for (index, (_, value)) in EngineCounters.fields.enumerated() {
            one[keyPath: value] = UInt64(index + 1)
            two[keyPath: value] = 100
        }
        one.count(dropped: .malformed)
        two.count(dropped: .malformed)
        let sum = one.adding(two)
        for (index, (key, value)) in EngineCounters.fields.enumerated() where key != "dropped" {
            XCTAssertEqual(sum[keyPath: value], UInt64(index + 101), key)
        }
        XCTAssertEqual(sum[.malformed], 2)
        var statistics = EngineStatistics()
        for (key, value) in EngineCounters.fields { statistics[key: key]? += sum[keyPath: value] }
        XCTAssertEqual(statistics.held, sum.held)
        XCTAssertEqual(statistics.packetsQueued, sum.packets)
    }
}
