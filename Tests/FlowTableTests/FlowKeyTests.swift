import FlowTable
import Packet
import XCTest

final class FlowKeyTests: XCTestCase {
    func testEveryFieldTakesPartInEquality() {
        let key = Fixture.key(1)
        var other = key
        XCTAssertEqual(key, other)
        XCTAssertEqual(key.hashValue, other.hashValue)
        other.transport = .udp
        XCTAssertNotEqual(key, other)
        other = key
        other.client = IPAddress(198, 19, 0, 2)
        XCTAssertNotEqual(key, other)
        other = key
        other.clientPort = 2
        XCTAssertNotEqual(key, other)
        other = key
        other.server = IPAddress(198, 18, 0, 2)
        XCTAssertNotEqual(key, other)
        other = key
        other.initialPort = 9001
        XCTAssertNotEqual(key, other)
    }

    func testPortsAndProtocolHashApart() {
        // The packed port word must not let (clientPort, initialPort, protocol) collide.
        let keys = [
            Fixture.key(1), Fixture.key(1, .udp), Fixture.key(256),
            FlowKey(transport: .tcp, client: IPAddress(198, 19, 0, 0), clientPort: 1, server: Fixture.server, initialPort: 9001),
        ]
        XCTAssertEqual(Set(keys.map(\.hashValue)).count, keys.count)
    }

    func testPacksIntoFortyBytes() {
        XCTAssertEqual(MemoryLayout<FlowKey>.size, 37)
        XCTAssertEqual(MemoryLayout<FlowKey>.stride, 40)
    }

    func testDescriptionReadsLikeConntrack() {
        XCTAssertEqual(Fixture.key(40000).description, "tcp 198.19.0.0:40000 -> 198.18.0.1:9000")
        let key = FlowKey(
            transport: .udp, client: IPAddress("2001:db8::2")!, clientPort: 5353,
            server: IPAddress("2001:db8::1")!, initialPort: 53)
        XCTAssertEqual(key.description, "udp [2001:db8::2]:5353 -> [2001:db8::1]:53")
    }
}
