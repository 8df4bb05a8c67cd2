import Control
import Foundation
import XCTest

final class EngineStatisticsTests: XCTestCase {
    func testRoundTripKeepsEveryCounter() throws {
        var statistics = EngineStatistics()
        statistics.packetsQueued = 7
        statistics.marked = 3
        statistics.flowsActive = 2
        statistics.reasons = ["no-flow": 4]
        statistics.negotiations = ["accepted": 1]
        let decoded = try JSONDecoder().decode(EngineStatistics.self, from: JSONEncoder().encode(statistics))
        XCTAssertEqual(decoded, statistics)
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

    func testAWrongTypeIsStillAnError() {
        XCTAssertThrowsError(try JSONDecoder().decode(EngineStatistics.self, from: Data(#"{"marked": "many"}"#.utf8)))
    }
}
