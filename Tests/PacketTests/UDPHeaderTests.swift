import Packet
import XCTest

final class UDPHeaderTests: XCTestCase {
    private func datagram<R>(_ bytes: [UInt8], _ body: (inout UDPHeader) throws -> R) throws -> R {
        let layout = Layout(bytes)
        var copy = bytes
        return try copy.withUnsafeMutableBytes { raw in
            var view = try UDPHeader(checking: UnsafeMutableRawBufferPointer(
                rebasing: raw[layout.transportOffset..<layout.transportOffset + layout.transportLength]))
            return try body(&view)
        }
    }

    func testDeconstruct() throws {
        let probe = Array("vpm probe\n".utf8)
        try datagram(Fixture.ipv4UDP.complete) { udp in
            XCTAssertEqual(udp.sourcePort, 40455)
            XCTAssertEqual(udp.destinationPort, 40003)
            XCTAssertEqual(udp.length, 18)
            XCTAssertEqual(udp.checksum, 0x9F0C)
            XCTAssertEqual(Array(udp.payload), probe)
        }
        try datagram(Fixture.ipv4UDPRouterAlert.complete) { udp in
            XCTAssertEqual(udp.sourcePort, 43010)
            XCTAssertEqual(udp.destinationPort, 40004)
            XCTAssertEqual(udp.length, 18)
            XCTAssertEqual(udp.checksum, 0x9510)
            XCTAssertEqual(Array(udp.payload), probe)
        }
        try datagram(Fixture.ipv6UDP.complete) { udp in
            XCTAssertEqual(udp.sourcePort, 45882)
            XCTAssertEqual(udp.destinationPort, 40007)
            XCTAssertEqual(udp.length, 18)
            XCTAssertEqual(udp.checksum, 0x87D6)
            XCTAssertEqual(Array(udp.payload), probe)
        }
        // The loopback capture holds the partial sum in the field.
        try datagram(Fixture.ipv6UDP.captured) { udp in XCTAssertEqual(udp.checksum, 0x0025) }
    }

    func testSetters() throws {
        try datagram(Fixture.ipv4UDP.complete) { udp in
            udp.setSourcePort(1)
            udp.setDestinationPort(2)
            udp.setLength(3)
            udp.setChecksum(4)
            XCTAssertEqual(Array(udp.bytes.prefix(8)), [0, 1, 0, 2, 0, 3, 0, 4])
        }
    }

    func testCheckedConstructorErrors() {
        func error(_ datagram: [UInt8], isFirstFragment: Bool = false) -> PacketError? {
            var copy = datagram
            return copy.withUnsafeMutableBytes { raw in
                do throws(PacketError) {
                    _ = try UDPHeader(checking: raw, isFirstFragment: isFirstFragment)
                    return nil
                } catch { return error }
            }
        }
        let datagram = Array(Fixture.ipv4UDP.complete[20...])  // 18 bytes
        XCTAssertNil(error(datagram))
        XCTAssertEqual(error(Array(datagram.prefix(7))), .truncatedTransportHeader)
        for length in [0, 7, 8, 17, 19, 0xFFFF] {
            var bytes = datagram
            bytes.setUInt16(UInt16(length), at: 4)
            XCTAssertEqual(error(bytes), .badUDPLength(length), "length \(length)")
        }
        // A first fragment's UDP length covers the whole datagram, more than this fragment.
        var fragment = datagram
        fragment.setUInt16(1000, at: 4)
        XCTAssertNil(error(fragment, isFirstFragment: true))
        XCTAssertEqual(error(datagram, isFirstFragment: true), .badUDPLength(18))
    }
}
