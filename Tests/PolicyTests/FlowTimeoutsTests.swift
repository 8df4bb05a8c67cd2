import FlowTable
import XCTest
@testable import Policy

final class FlowTimeoutsTests: XCTestCase {
    func testDurations() throws {
        XCTAssertEqual(try FlowTimeouts.seconds(parsing: "30"), 30)
        XCTAssertEqual(try FlowTimeouts.seconds(parsing: "30s"), 30)
        XCTAssertEqual(try FlowTimeouts.seconds(parsing: "10m"), 600)
        XCTAssertEqual(try FlowTimeouts.seconds(parsing: "2h"), 7_200)
        XCTAssertEqual(try FlowTimeouts.seconds(parsing: "5d"), 432_000)
    }

    func testBadDurations() {
        for text in ["", "s", "5x", "1.5h", "-3s", "5 d", "0", "0s", "50000d", "99999999999"] {
            XCTAssertThrowsError(try FlowTimeouts.seconds(parsing: text), text)
        }
    }

    func testTextRoundTrips() throws {
        for seconds: UInt32 in [1, 30, 90, 120, 3_600, 432_000, 86_401] {
            XCTAssertEqual(try FlowTimeouts.seconds(parsing: FlowTimeouts.text(seconds: seconds)), seconds)
        }
        XCTAssertEqual(FlowTimeouts.text(seconds: 432_000), "5d")
        XCTAssertEqual(FlowTimeouts.text(seconds: 90), "90s")
    }

    func testStandardMatchesTheDocumentedDefaults() {
        let standard = FlowTimeouts.standard
        XCTAssertEqual(standard, FlowTimeouts(opening: 30_000, established: 432_000_000, closing: 120_000, closed: 10_000,
                                              udp: 30_000, udpStream: 180_000))
        XCTAssertEqual(FlowTimeouts(), standard)
    }
}
