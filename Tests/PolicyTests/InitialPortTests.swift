import XCTest
import Packet
import Policy

final class InitialPortTests: XCTestCase {
    func testTextForms() {
        XCTAssertEqual(InitialPort("9000"), InitialPort(port: 9000, transport: .tcp))
        XCTAssertEqual(InitialPort("9000/tcp"), InitialPort(port: 9000, transport: .tcp))
        XCTAssertEqual(InitialPort("5353/udp"), InitialPort(port: 5353, transport: .udp))
        XCTAssertEqual(InitialPort("5353/UDP"), InitialPort(port: 5353, transport: .udp))
        XCTAssertEqual(InitialPort("65535")?.port, 65535)
    }

    func testRejectsBadPortsAndTransports() {
        XCTAssertNil(InitialPort("0"))
        XCTAssertNil(InitialPort("65536"))
        XCTAssertNil(InitialPort("+9000"))
        XCTAssertNil(InitialPort("9000/sctp"))
        XCTAssertNil(InitialPort("9000/"))
        XCTAssertNil(InitialPort(""))
    }

    func testDescriptionAlwaysNamesTheTransport() {
        XCTAssertEqual(InitialPort(port: 9000).description, "9000/tcp")
        XCTAssertEqual(InitialPort(port: 5353, transport: .udp).description, "5353/udp")
    }
}
