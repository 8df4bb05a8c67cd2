import FlowTable
import XCTest

final class FlowTimeoutsTests: XCTestCase {
    func testStandardTimeouts() {
        let standard = FlowTimeouts.standard
        XCTAssertEqual(standard.opening, 30_000)
        XCTAssertEqual(standard.established, 432_000_000)
        XCTAssertEqual(standard.closing, 120_000)
        XCTAssertEqual(standard.closed, 10_000)
        XCTAssertEqual(standard.udp, 30_000)
        XCTAssertEqual(standard.udpStream, 180_000)
    }

    func testTimeoutForEachState() {
        let timeouts = Fixture.timeouts
        let expected: [FlowState: UInt64] = [
            .opening: 100, .established: 1_000, .closing: 200, .closed: 50, .udp: 300, .udpStream: 600,
        ]
        for state in FlowState.allCases {
            XCTAssertEqual(timeouts.timeout(for: state), expected[state], "\(state)")
        }
    }
}
