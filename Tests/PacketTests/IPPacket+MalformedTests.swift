import Packet
import XCTest

/// Malformed input: a typed reason, no byte changed, no crash.
final class IPPacketMalformedTests: XCTestCase {
    /// Parses and tries every rewrite; asserts the error is `expected` and no byte changed.
    private func assertRejected(
        _ bytes: [UInt8], _ expected: PacketError, _ message: String = "", file: StaticString = #filePath, line: UInt = #line
    ) {
        for state in [ChecksumState.complete, .partial] {
            var copy = bytes
            let error = rewrite(&copy) { packet throws(PacketError) in
                try packet.setSourcePort(1, checksum: state)
                try packet.setDestinationPort(2, checksum: state)
            }
            XCTAssertEqual(error, expected, message, file: file, line: line)
            XCTAssertEqual(copy, bytes, "bytes changed: \(message)", file: file, line: line)
        }
    }

    func testEveryTruncation() {
        for fixture in Fixture.all {
            for bytes in [fixture.complete, fixture.captured] {
                let minimum = bytes[0] >> 4 == 4 ? 20 : 40
                for length in 0..<bytes.count {
                    let expected: PacketError = length == 0 ? .empty
                        : length < minimum ? .truncatedNetworkHeader
                        : .truncated(captured: length, declared: bytes.count)
                    assertRejected(Array(bytes.prefix(length)), expected, "\(fixture.name) cut to \(length)")
                }
            }
        }
    }

    func testUnknownVersions() {
        for version in [0, 1, 2, 3, 5, 7, 15] as [UInt8] {
            var bytes = Fixture.ipv4TCPData.complete
            bytes[0] = version << 4 | 5
            assertRejected(bytes, .unknownVersion(version))
        }
    }

    func testEveryBadHeaderLength() {
        for fixture in [Fixture.ipv4TCPReset, .ipv4TCPSynchronize, .ipv4UDP, .ipv4UDPRouterAlert] {
            let total = fixture.complete.count
            for words in 0...15 where words < 5 || words * 4 > total {
                var bytes = fixture.complete
                bytes[0] = 0x40 | UInt8(words)
                assertRejected(bytes, .badHeaderLength(words), "\(fixture.name) IHL \(words)")
            }
        }
    }

    func testHeaderLengthPastTransportHeader() {
        // IHL 11 on a 60-byte TCP packet leaves 16 bytes for TCP: too short for its header.
        var bytes = Fixture.ipv4TCPSynchronize.complete
        bytes[0] = 0x4B
        assertRejected(bytes, .truncatedTransportHeader)
        // IHL 15 leaves nothing.
        bytes[0] = 0x4F
        assertRejected(bytes, .truncatedTransportHeader)
    }

    func testBadTotalLength() {
        for total in [0, 1, 19] {
            var bytes = Fixture.ipv4UDP.complete
            bytes.setUInt16(UInt16(total), at: 2)
            assertRejected(bytes, .badTotalLength(total))
        }
        // A larger total than captured is a truncation (NFQUEUE copy range too small).
        var bytes = Fixture.ipv4UDP.complete
        bytes.setUInt16(1500, at: 2)
        assertRejected(bytes, .truncated(captured: bytes.count, declared: 1500))
        var ipv6 = Fixture.ipv6UDP.complete
        ipv6.setUInt16(1460, at: 4)
        assertRejected(ipv6, .truncated(captured: ipv6.count, declared: 1500))
    }

    func testEveryBadDataOffset() {
        for fixture in [Fixture.ipv4TCPSynchronize, .ipv4TCPReset, .ipv4TCPData, .ipv6TCPData, .ipv6ExtensionHeadersTCPData] {
            let layout = Layout(fixture.complete)
            for words in 0...15 where words < 5 || words * 4 > layout.transportLength {
                var bytes = fixture.complete
                bytes[layout.transportOffset + 12] = UInt8(words) << 4
                assertRejected(bytes, .badDataOffset(words), "\(fixture.name) data offset \(words)")
            }
        }
    }

    func testBadUDPLength() {
        for fixture in [Fixture.ipv4UDP, .ipv4UDPRouterAlert, .ipv6UDP] {
            let layout = Layout(fixture.complete)
            for length in [0, 1, 7, 8, layout.transportLength - 1, layout.transportLength + 1, 0xFFFF] {
                var bytes = fixture.complete
                bytes.setUInt16(UInt16(length), at: layout.transportOffset + 4)
                assertRejected(bytes, .badUDPLength(length), "\(fixture.name) UDP length \(length)")
            }
        }
    }

    func testIPv4NonFirstFragment() {
        for offset in [1, 185, 0x1FFF] as [UInt16] {
            for moreFragments in [false, true] {
                var bytes = Fixture.ipv4UDP.complete
                bytes.setUInt16((moreFragments ? 0x2000 : 0) | offset, at: 6)
                bytes.fixIPv4HeaderChecksum()
                assertRejected(bytes, .nonFirstFragment)
            }
        }
    }

    /// `fixture` with a fragment header (offset and flags as given) before its transport header.
    private func withFragmentHeader(_ fixture: Fixture, offsetAndFlags: UInt16) -> [UInt8] {
        var bytes = fixture.complete
        let header: [UInt8] = [bytes[6], 0, UInt8(offsetAndFlags >> 8), UInt8(offsetAndFlags & 0xFF), 0, 0, 0, 1]
        bytes.insert(contentsOf: header, at: 40)
        bytes[6] = 44
        bytes.setUInt16(UInt16(bytes.count - 40), at: 4)
        return bytes
    }

    func testIPv6NonFirstFragment() {
        for offsetAndFlags in [0x0008, 0x0009, 0xFFF8, 0xFFF9] as [UInt16] {
            assertRejected(withFragmentHeader(.ipv6UDP, offsetAndFlags: offsetAndFlags), .nonFirstFragment)
        }
    }

    func testIPv6Jumbogram() {
        var bytes = Fixture.ipv6TCPData.complete
        bytes.setUInt16(0, at: 4)
        assertRejected(bytes, .badTotalLength(0))
    }

    func testUnsupportedTransports() {
        // ICMP 1, IGMP 2, ESP 50, AH 51, GRE 47, SCTP 132 over IPv4.
        for number in [1, 2, 47, 50, 51, 132] as [UInt8] {
            var bytes = Fixture.ipv4TCPData.complete
            bytes[9] = number
            bytes.fixIPv4HeaderChecksum()
            assertRejected(bytes, .unsupportedTransport(number))
        }
        // ICMPv6 58, ESP 50, AH 51, no next header 59, mobility 135 over IPv6.
        for number in [58, 50, 51, 59, 135] as [UInt8] {
            var bytes = Fixture.ipv6TCPData.complete
            bytes[6] = number
            assertRejected(bytes, .unsupportedTransport(number))
            // The same behind the extension headers.
            var extended = Fixture.ipv6ExtensionHeadersTCPData.complete
            extended[48] = number
            assertRejected(extended, .unsupportedTransport(number))
        }
    }

    func testBadExtensionHeaders() {
        let fixture = Fixture.ipv6ExtensionHeadersTCPData.complete  // payload 66: 8 + 8 + 50
        // Destination options claiming 8 * (1 + 7) = 64 bytes, past the payload.
        var tooLong = fixture
        tooLong[49] = 7
        assertRejected(tooLong, .badExtensionHeader)
        // Hop-by-hop after another header is not allowed.
        var misplaced = fixture
        misplaced[40] = 0
        assertRejected(misplaced, .badExtensionHeader)
        // An extension header that does not fit at all.
        var header = Array(fixture[..<40]) + [60, 0, 0, 0]
        header[6] = 60
        header.setUInt16(4, at: 4)
        assertRejected(header, .badExtensionHeader)
        // A routing header (43) is walked like the others; here it runs past the end.
        var routing = fixture
        routing[40] = 43
        routing[49] = 0
        routing[48] = 43
        routing[57] = 200
        assertRejected(routing, .badExtensionHeader)
        // Extension headers that fill the payload leave no transport header.
        var empty = Array(fixture[..<56])
        empty.setUInt16(16, at: 4)
        assertRejected(empty, .truncatedTransportHeader)
    }

    /// Random corruption must never crash and never change bytes when it is rejected.
    func testRandomCorruption() {
        var generator = SeededGenerator(seed: 0xBAD)
        for _ in 0..<20_000 {
            let fixture = Fixture.all.randomElement(using: &generator)!
            var bytes = Bool.random(using: &generator) ? fixture.complete : fixture.captured
            for _ in 0..<Int.random(in: 1...4, using: &generator) {
                let index = Int.random(in: 0..<min(bytes.count, 64), using: &generator)
                bytes[index] = .random(in: 0...255, using: &generator)
            }
            if Int.random(in: 0..<4, using: &generator) == 0 {
                bytes.removeLast(Int.random(in: 0..<bytes.count, using: &generator))
            }
            let before = bytes
            var copy = bytes
            let state: ChecksumState = Bool.random(using: &generator) ? .complete : .partial
            let error = rewrite(&copy) { packet throws(PacketError) in
                _ = (packet.sourceAddress, packet.destinationAddress, packet.tcpFlags, packet.transportChecksumIsValid())
                try packet.setSourcePort(7, checksum: state)
                try packet.setDestinationPort(9, checksum: state)
                if state == .partial { XCTAssertTrue(packet.transportChecksumIsValid()) }
            }
            if error != nil && error != .fragmentNeedsFullChecksum {
                XCTAssertEqual(copy, before)
            }
        }
    }
}
