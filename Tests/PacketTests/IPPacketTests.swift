import Packet
import XCTest

final class IPPacketTests: XCTestCase {
    private struct Expected {
        let version: IPVersion
        let transportProtocol: TransportProtocol
        let networkHeaderLength: Int
        let transportLength: Int
        let source: String
        let destination: String
        let sourcePort: UInt16
        let destinationPort: UInt16
        let flags: TCPFlags
    }

    private let expectations: [(Fixture, Expected)] = [
        (.ipv4TCPSynchronize, Expected(version: .v4, transportProtocol: .tcp, networkHeaderLength: 20, transportLength: 40,
                                       source: "127.0.0.1", destination: "127.0.0.1", sourcePort: 41026,
                                       destinationPort: 40001, flags: [.syn])),
        (.ipv4TCPReset, Expected(version: .v4, transportProtocol: .tcp, networkHeaderLength: 20, transportLength: 20,
                                 source: "127.0.0.1", destination: "127.0.0.1", sourcePort: 40002,
                                 destinationPort: 55292, flags: [.rst, .ack])),
        (.ipv4TCPData, Expected(version: .v4, transportProtocol: .tcp, networkHeaderLength: 20, transportLength: 50,
                                source: "127.0.0.1", destination: "127.0.0.1", sourcePort: 41026,
                                destinationPort: 40001, flags: [.psh, .ack])),
        (.ipv4UDP, Expected(version: .v4, transportProtocol: .udp, networkHeaderLength: 20, transportLength: 18,
                            source: "127.0.0.1", destination: "127.0.0.1", sourcePort: 40455,
                            destinationPort: 40003, flags: [])),
        (.ipv4UDPRouterAlert, Expected(version: .v4, transportProtocol: .udp, networkHeaderLength: 24, transportLength: 18,
                                       source: "127.0.0.1", destination: "127.0.0.1", sourcePort: 43010,
                                       destinationPort: 40004, flags: [])),
        (.ipv4OptionsTCPData, Expected(version: .v4, transportProtocol: .tcp, networkHeaderLength: 24, transportLength: 50,
                                       source: "127.0.0.1", destination: "127.0.0.1", sourcePort: 54000,
                                       destinationPort: 40005, flags: [.psh, .ack])),
        (.ipv6TCPData, Expected(version: .v6, transportProtocol: .tcp, networkHeaderLength: 40, transportLength: 50,
                                source: "::1", destination: "::1", sourcePort: 46728, destinationPort: 40006,
                                flags: [.psh, .ack])),
        (.ipv6UDP, Expected(version: .v6, transportProtocol: .udp, networkHeaderLength: 40, transportLength: 18,
                            source: "::1", destination: "::1", sourcePort: 45882, destinationPort: 40007, flags: [])),
        (.ipv6ExtensionHeadersTCPData, Expected(version: .v6, transportProtocol: .tcp, networkHeaderLength: 56,
                                                transportLength: 50, source: "::1", destination: "::1",
                                                sourcePort: 50184, destinationPort: 40008, flags: [.psh, .ack])),
    ]

    func testEveryFixtureHasExpectations() {
        XCTAssertEqual(expectations.map(\.0.name), Fixture.all.map(\.name))
    }

    func testDeconstructFixtures() throws {
        for (fixture, expected) in expectations {
            for bytes in [fixture.captured, fixture.complete] {
                try parse(bytes) { packet in
                    XCTAssertEqual(packet.version, expected.version, fixture.name)
                    XCTAssertEqual(packet.transportProtocol, expected.transportProtocol, fixture.name)
                    XCTAssertEqual(packet.networkHeaderLength, expected.networkHeaderLength, fixture.name)
                    XCTAssertEqual(packet.transportOffset, expected.networkHeaderLength, fixture.name)
                    XCTAssertEqual(packet.transportLength, expected.transportLength, fixture.name)
                    XCTAssertEqual(packet.bytes.count, bytes.count, fixture.name)
                    XCTAssertFalse(packet.isFragment, fixture.name)
                    XCTAssertEqual(packet.sourceAddress.description, expected.source, fixture.name)
                    XCTAssertEqual(packet.destinationAddress.description, expected.destination, fixture.name)
                    XCTAssertEqual(packet.sourcePort, expected.sourcePort, fixture.name)
                    XCTAssertEqual(packet.destinationPort, expected.destinationPort, fixture.name)
                    XCTAssertEqual(packet.tcpFlags, expected.flags, fixture.name)
                    XCTAssertEqual(packet.tcpHeader != nil, expected.transportProtocol == .tcp)
                    XCTAssertEqual(packet.udpHeader != nil, expected.transportProtocol == .udp)
                    XCTAssertEqual(packet.ipv4Header != nil, expected.version == .v4)
                    XCTAssertEqual(packet.ipv6Header != nil, expected.version == .v6)
                }
            }
        }
    }

    func testCapturedChecksumStates() throws {
        for fixture in Fixture.all {
            // Loopback leaves the pseudo-header sum in the field; only the kernel's RST was complete.
            let captured = try parse(fixture.captured) { ($0.transportChecksumIsValid(), $0.transportChecksum, $0.pseudoHeaderSum) }
            XCTAssertEqual(captured.0, fixture.name == Fixture.ipv4TCPReset.name, fixture.name)
            if !captured.0 { XCTAssertEqual(captured.1, captured.2, fixture.name) }
            XCTAssertTrue(try parse(fixture.complete) { $0.transportChecksumIsValid() }, fixture.name)
        }
    }

    func testRewriteCompleteIncrementally() {
        for fixture in Fixture.all {
            var bytes = fixture.complete
            XCTAssertNil(rewrite(&bytes) { packet throws(PacketError) in
                try packet.setSourcePort(Fixture.newSourcePort, checksum: .complete)
            }, fixture.name)
            XCTAssertEqual(bytes, fixture.sourceRewritten, fixture.name)
            XCTAssertNil(rewrite(&bytes) { packet throws(PacketError) in
                try packet.setDestinationPort(Fixture.newDestinationPort, checksum: .complete)
                XCTAssertEqual(packet.sourcePort, Fixture.newSourcePort)
                XCTAssertEqual(packet.destinationPort, Fixture.newDestinationPort)
                XCTAssertTrue(packet.transportChecksumIsValid())
            }, fixture.name)
            XCTAssertEqual(bytes, fixture.bothRewritten, fixture.name)
            XCTAssertTrue(Layout(bytes).checksumIsValid(bytes), fixture.name)
        }
    }

    func testRewritePartialRecomputes() {
        for fixture in Fixture.all {
            var bytes = fixture.captured
            XCTAssertNil(rewrite(&bytes) { packet throws(PacketError) in
                try packet.setSourcePort(Fixture.newSourcePort, checksum: .partial)
            }, fixture.name)
            XCTAssertEqual(bytes, fixture.sourceRewritten, fixture.name)
            // Once recomputed the checksum is complete, but a partial rewrite must still be right.
            XCTAssertNil(rewrite(&bytes) { packet throws(PacketError) in
                try packet.setDestinationPort(Fixture.newDestinationPort, checksum: .partial)
            }, fixture.name)
            XCTAssertEqual(bytes, fixture.bothRewritten, fixture.name)
        }
    }

    func testRewriteBackRestoresOriginal() {
        for fixture in Fixture.all {
            var bytes = fixture.bothRewritten
            let original = try! parse(fixture.complete) { ($0.sourcePort, $0.destinationPort) }
            XCTAssertNil(rewrite(&bytes) { packet throws(PacketError) in
                try packet.setSourcePort(original.0, checksum: .complete)
                try packet.setDestinationPort(original.1, checksum: .complete)
            })
            XCTAssertEqual(bytes, fixture.complete, fixture.name)
        }
    }

    func testFillTransportChecksum() {
        for fixture in Fixture.all {
            var bytes = fixture.captured
            XCTAssertNil(rewrite(&bytes) { packet in packet.fillTransportChecksum() })
            XCTAssertEqual(bytes, fixture.complete, fixture.name)
        }
    }

    func testTrailingPaddingIsIgnoredAndKept() {
        for fixture in Fixture.all {
            let padding: [UInt8] = [0xEE, 0xEE, 0xEE, 0xEE, 0xEE, 0xEE]
            var bytes = fixture.complete + padding
            XCTAssertNil(rewrite(&bytes) { packet throws(PacketError) in
                XCTAssertEqual(packet.bytes.count, fixture.complete.count)
                try packet.setSourcePort(Fixture.newSourcePort, checksum: .partial)
                try packet.setDestinationPort(Fixture.newDestinationPort, checksum: .complete)
            })
            XCTAssertEqual(bytes, fixture.bothRewritten + padding, fixture.name)
        }
    }

    // MARK: UDP zero checksum rules

    func testUDPv4ZeroChecksumStaysZero() {
        var bytes = Fixture.ipv4UDP.complete
        let layout = Layout(bytes)
        layout.setChecksumField(&bytes, 0)
        let before = bytes
        XCTAssertNil(rewrite(&bytes) { packet throws(PacketError) in
            XCTAssertTrue(packet.transportChecksumIsValid())
            try packet.setSourcePort(Fixture.newSourcePort, checksum: .complete)
            try packet.setDestinationPort(Fixture.newDestinationPort, checksum: .complete)
            XCTAssertTrue(packet.transportChecksumIsValid())
        })
        var expected = before
        expected.setUInt16(Fixture.newSourcePort, at: layout.transportOffset)
        expected.setUInt16(Fixture.newDestinationPort, at: layout.transportOffset + 2)
        XCTAssertEqual(bytes, expected)
    }

    func testUDPv6ZeroChecksumGetsFullChecksum() {
        var bytes = Fixture.ipv6UDP.complete
        Layout(bytes).setChecksumField(&bytes, 0)
        XCTAssertFalse(try parse(bytes) { $0.transportChecksumIsValid() })
        XCTAssertNil(rewrite(&bytes) { packet throws(PacketError) in
            try packet.setSourcePort(Fixture.newSourcePort, checksum: .complete)
            try packet.setDestinationPort(Fixture.newDestinationPort, checksum: .complete)
        })
        XCTAssertEqual(bytes, Fixture.ipv6UDP.bothRewritten)
    }

    /// Finds a payload word that makes the UDP checksum compute to 0, so it must be sent as 0xFFFF.
    private func udpWithComputedZero(_ fixture: Fixture) -> [UInt8] {
        var bytes = fixture.complete
        let layout = Layout(bytes)
        let word = layout.transportOffset + 8
        layout.setChecksumField(&bytes, 0)
        bytes.setUInt16(0, at: word)
        // Choose the payload word so that the whole sum is 0xFFFF: the complement is then 0.
        let sum = referenceSum(layout.pseudoHeader(bytes) + layout.segment(bytes))
        bytes.setUInt16(~sum, at: word)
        XCTAssertEqual(referenceSum(layout.pseudoHeader(bytes) + layout.segment(bytes)), 0xFFFF)
        return bytes
    }

    func testUDPComputedZeroIsSentAsAllOnes() {
        for fixture in [Fixture.ipv4UDP, .ipv6UDP] {
            var bytes = udpWithComputedZero(fixture)
            let layout = Layout(bytes)
            let port = bytes.uint16(at: layout.transportOffset)
            XCTAssertNil(rewrite(&bytes) { packet in packet.fillTransportChecksum() })
            XCTAssertEqual(layout.checksumField(bytes), 0xFFFF, fixture.name)
            XCTAssertTrue(try parse(bytes) { $0.transportChecksumIsValid() })
            // Incremental update to the same port lands on 0 and must also be sent as 0xFFFF.
            XCTAssertNil(rewrite(&bytes) { packet throws(PacketError) in try packet.setSourcePort(port, checksum: .complete) })
            XCTAssertEqual(layout.checksumField(bytes), 0xFFFF, fixture.name)
            // From a partial field the full recompute gives the same.
            layout.setChecksumField(&bytes, layout.partialChecksum(bytes))
            XCTAssertNil(rewrite(&bytes) { packet throws(PacketError) in try packet.setSourcePort(port, checksum: .partial) })
            XCTAssertEqual(layout.checksumField(bytes), 0xFFFF, fixture.name)
        }
    }

    // MARK: First fragments

    /// Cuts the complete `fixture` (UDP or TCP) into its first fragment, keeping `keep` bytes of L4.
    private func firstFragment(_ fixture: Fixture, keep: Int) -> [UInt8] {
        let bytes = fixture.complete
        let layout = Layout(bytes)
        let transport = Array(layout.segment(bytes).prefix(keep))
        if layout.isIPv4 {
            var fragment = Array(bytes[..<layout.transportOffset]) + transport
            fragment.setUInt16(UInt16(fragment.count), at: 2)
            fragment.setUInt16(0x2000, at: 6)  // more fragments, offset 0
            fragment.fixIPv4HeaderChecksum()
            return fragment
        }
        // IPv6: insert a fragment header (offset 0, M set) before the transport header.
        var fragment = Array(bytes[..<40]) + [bytes[6], 0, 0x00, 0x01, 0x12, 0x34, 0x56, 0x78] + transport
        fragment[6] = 44
        fragment.setUInt16(UInt16(fragment.count - 40), at: 4)
        return fragment
    }

    func testFirstFragmentCompleteIsUpdatedIncrementally() throws {
        for fixture in [Fixture.ipv4UDP, .ipv6UDP, .ipv4TCPData, .ipv6TCPData] {
            let keep = Layout(fixture.complete).protocolNumber == 6 ? 40 : 16
            var bytes = firstFragment(fixture, keep: keep)
            let fragmentLayout = Layout(bytes)
            try parse(bytes) { packet in
                XCTAssertTrue(packet.isFragment, fixture.name)
                XCTAssertEqual(packet.transportLength, keep)
                XCTAssertFalse(packet.transportChecksumIsValid())
            }
            XCTAssertNil(rewrite(&bytes) { packet throws(PacketError) in
                try packet.setSourcePort(Fixture.newSourcePort, checksum: .complete)
                try packet.setDestinationPort(Fixture.newDestinationPort, checksum: .complete)
            }, fixture.name)
            // The checksum covers the whole datagram: it must equal the unfragmented rewrite's.
            let whole = Layout(fixture.bothRewritten)
            XCTAssertEqual(fragmentLayout.checksumField(bytes), whole.checksumField(fixture.bothRewritten), fixture.name)
            XCTAssertEqual(Array(fragmentLayout.segment(bytes)), Array(whole.segment(fixture.bothRewritten).prefix(keep)))
        }
    }

    func testFirstFragmentPartialThrowsWithoutChange() {
        for fixture in [Fixture.ipv4UDP, .ipv6UDP, .ipv4TCPData, .ipv6TCPData] {
            let keep = Layout(fixture.complete).protocolNumber == 6 ? 40 : 16
            var bytes = firstFragment(fixture, keep: keep)
            let before = bytes
            XCTAssertEqual(rewrite(&bytes) { packet throws(PacketError) in
                try packet.setSourcePort(Fixture.newSourcePort, checksum: .partial)
            }, .fragmentNeedsFullChecksum)
            XCTAssertEqual(rewrite(&bytes) { packet throws(PacketError) in
                try packet.setDestinationPort(Fixture.newDestinationPort, checksum: .partial)
            }, .fragmentNeedsFullChecksum)
            XCTAssertNil(rewrite(&bytes) { packet in packet.fillTransportChecksum() })
            XCTAssertEqual(bytes, before, fixture.name)
        }
    }

    func testIPv6FirstFragmentWithZeroUDPChecksumThrows() {
        var bytes = firstFragment(.ipv6UDP, keep: 16)
        Layout(bytes).setChecksumField(&bytes, 0)
        let before = bytes
        XCTAssertEqual(rewrite(&bytes) { packet throws(PacketError) in
            try packet.setSourcePort(Fixture.newSourcePort, checksum: .complete)
        }, .fragmentNeedsFullChecksum)
        XCTAssertEqual(bytes, before)
    }

    func testIPv6AtomicFragmentIsWholeDatagram() throws {
        // Offset 0 without "more fragments" (RFC 6946): the whole datagram, checksummed normally.
        var bytes = firstFragment(.ipv6TCPData, keep: 50)
        bytes[43] = 0x00
        try parse(bytes) { packet in
            XCTAssertFalse(packet.isFragment)
            XCTAssertEqual(packet.networkHeaderLength, 48)
            XCTAssertTrue(packet.transportChecksumIsValid())
        }
    }

    func testErrorDescriptions() {
        XCTAssertEqual(PacketError.truncated(captured: 64, declared: 1500).description,
                       "packet truncated: captured 64 of 1500 bytes (is the queue copy range too small?)")
        XCTAssertEqual(PacketError.unsupportedTransport(50).description, "unsupported transport protocol 50")
        XCTAssertEqual(PacketError.badDataOffset(4).description, "bad TCP data offset 4 words (16 bytes)")
    }
}
