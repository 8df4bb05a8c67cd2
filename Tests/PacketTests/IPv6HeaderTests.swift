import Packet
import XCTest

final class IPv6HeaderTests: XCTestCase {
    private func header<R>(_ bytes: [UInt8], _ body: (inout IPv6Header) throws -> R) throws -> R {
        var copy = bytes
        return try copy.withUnsafeMutableBytes { raw in
            var view = try IPv6Header(checking: raw)
            return try body(&view)
        }
    }

    func testDeconstructTCP() throws {
        try header(Fixture.ipv6TCPData.complete) { header in
            XCTAssertEqual(header.version, 6)
            XCTAssertEqual(header.trafficClass, 0)
            XCTAssertEqual(header.flowLabel, 0x7FD2A)
            XCTAssertEqual(header.payloadLength, 50)
            XCTAssertEqual(header.totalLength, 90)
            XCTAssertEqual(header.nextHeader, 6)
            XCTAssertEqual(header.hopLimit, 64)
            XCTAssertEqual(header.sourceAddress, .loopbackIPv6)
            XCTAssertEqual(header.destinationAddress, .loopbackIPv6)
        }
    }

    func testDeconstructUDP() throws {
        try header(Fixture.ipv6UDP.complete) { header in
            XCTAssertEqual(header.flowLabel, 0xA5AC6)
            XCTAssertEqual(header.payloadLength, 18)
            XCTAssertEqual(header.nextHeader, 17)
        }
    }

    func testDeconstructExtensionHeaders() throws {
        try header(Fixture.ipv6ExtensionHeadersTCPData.complete) { header in
            XCTAssertEqual(header.flowLabel, 0x725A7)
            XCTAssertEqual(header.payloadLength, 66)
            XCTAssertEqual(header.nextHeader, 0)
            // Hop-by-hop (PadN), then destination options (type 0x1e, 4 bytes), then TCP.
            XCTAssertEqual(Array(header.bytes[40..<56]),
                           [0x3C, 0x00, 0x01, 0x04, 0x00, 0x00, 0x00, 0x00, 0x06, 0x00, 0x1E, 0x04, 0xDE, 0xAD, 0xBE, 0xEF])
        }
    }

    func testSetters() throws {
        let original = Fixture.ipv6TCPData.complete
        var bytes = original
        try bytes.withUnsafeMutableBytes { raw in
            var header = try IPv6Header(checking: raw)
            header.setTrafficClassAndFlowLabel(trafficClass: 0xB8, flowLabel: 0x12345)
            XCTAssertEqual(header.version, 6)
            XCTAssertEqual(header.trafficClass, 0xB8)
            XCTAssertEqual(header.flowLabel, 0x12345)
            header.setTrafficClassAndFlowLabel(trafficClass: 0, flowLabel: 0x7FD2A)
            header.setDestinationAddress(IPAddress("2001:db8::1")!)
            XCTAssertEqual(header.destinationAddress.description, "2001:db8::1")
            header.setDestinationAddress(.loopbackIPv6)
            header.setHopLimit(1)
            XCTAssertEqual(header.hopLimit, 1)
            header.setHopLimit(64)
        }
        XCTAssertEqual(bytes, original)
    }

    func testCheckedConstructorErrors() {
        let valid = Fixture.ipv6UDP.complete  // 58 bytes
        func error(_ bytes: [UInt8]) -> PacketError? {
            var copy = bytes
            return copy.withUnsafeMutableBytes { raw in
                do throws(PacketError) {
                    _ = try IPv6Header(checking: raw)
                    return nil
                } catch { return error }
            }
        }
        XCTAssertEqual(error([]), .empty)
        XCTAssertEqual(error([0x40] + valid.dropFirst()), .unknownVersion(4))
        XCTAssertEqual(error(Array(valid.prefix(39))), .truncatedNetworkHeader)
        XCTAssertEqual(error(Array(valid.prefix(57))), .truncated(captured: 57, declared: 58))
        XCTAssertNil(error(valid + [0, 0]))
        var jumbogram = valid
        jumbogram.setUInt16(0, at: 4)
        XCTAssertEqual(error(jumbogram), .badTotalLength(0))
    }
}
