@testable import Engine
import XCTest

/// Lines strangers can trigger are limited: a burst, then a steady rate; the first line
/// after a suppression says how many were dropped.
final class LogLimiterTests: XCTestCase {
    func testABurstThenTheRateAndTheCountOfWhatWasSuppressed() {
        let limiter = LogLimiter(burst: 3, perSecond: 2)
        let start: UInt64 = 1_000_000_000  // later than the limiter's creation
        XCTAssertEqual((0..<3).map { _ in limiter.admit(now: start) }, [0, 0, 0])
        XCTAssertEqual((0..<1000).compactMap { _ in limiter.admit(now: start) }, [], "a flood writes nothing more")
        XCTAssertNil(limiter.admit(now: start + 400), "not yet a whole token at 2 per second")
        XCTAssertEqual(limiter.admit(now: start + 500), 1001, "the next line counts what was dropped")
        XCTAssertEqual(limiter.admit(now: start + 1000), 0)
        // Quiet for a minute: the bucket refills to the burst, not beyond.
        XCTAssertEqual((0..<5).map { _ in limiter.admit(now: start + 61_000) }, [0, 0, 0, nil, nil])
    }
}
