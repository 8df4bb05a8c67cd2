@testable import Engine
import XCTest

final class EphemeralPortsTests: XCTestCase {
    func testParsesTheKernelsText() {
        XCTAssertEqual(EphemeralPorts.parse(range: "32768\t60999\n", reserved: "\n"),
                       EphemeralPorts(range: 32768...60999, reserved: []))
        XCTAssertEqual(EphemeralPorts.parse(range: "1024 65535", reserved: "20000-20999,30000\n")?.reserved,
                       [20000...20999, 30000...30000])
        XCTAssertNil(EphemeralPorts.parse(range: "60999 32768", reserved: ""))
        XCTAssertNil(EphemeralPorts.parse(range: "x", reserved: ""))
    }

    func testARangeBelowTheEphemeralOnesIsFine() {
        let ports = EphemeralPorts(range: 32768...60999, reserved: [])
        XCTAssertNil(ports.problem(20000...20999))
        XCTAssertNil(ports.problem(61000...65535))
    }

    func testOverlapIsRefusedUnlessReserved() throws {
        let open = EphemeralPorts(range: 32768...60999, reserved: [])
        let problem = try XCTUnwrap(open.problem(30000...33000))
        XCTAssertTrue(problem.contains("sysctl -w net.ipv4.ip_local_reserved_ports=32768-33000"), problem)
        let reserved = EphemeralPorts(range: 32768...60999, reserved: [32768...32999, 33000...33000])
        XCTAssertNil(reserved.problem(30000...33000))
        let partly = EphemeralPorts(range: 32768...60999, reserved: [32800...32900])
        XCTAssertEqual(partly.exposed(30000...33000), [32768...32799, 32901...33000])
    }
}
