import Packet
import XCTest

/// Random packets: the incremental update must produce exactly the bytes a full recompute
/// produces, and a rewrite from the kernel's partial state must verify.
final class IPPacketPropertyTests: XCTestCase {
    private struct RandomPacket {
        var bytes: [UInt8]
        var layout: Layout { Layout(bytes) }
    }

    private func randomAddress(ipv4: Bool, using generator: inout SeededGenerator) -> IPAddress {
        ipv4 ? IPAddress(ipv4: .random(in: 0...UInt32.max, using: &generator))
             : IPAddress(high: .random(in: 0...UInt64.max, using: &generator), low: .random(in: 0...UInt64.max, using: &generator))
    }

    /// Emits a valid packet, then sometimes adds IPv4 options or IPv6 extension headers, which
    /// leave the transport checksum valid (the pseudo-header does not cover them).
    private func randomPacket(using generator: inout SeededGenerator) throws -> [UInt8] {
        let ipv4 = Bool.random(using: &generator)
        let transport: TransportProtocol = Bool.random(using: &generator) ? .tcp : .udp
        let representation = PacketRepresentation(
            sourceAddress: randomAddress(ipv4: ipv4, using: &generator),
            destinationAddress: randomAddress(ipv4: ipv4, using: &generator),
            transportProtocol: transport,
            sourcePort: .random(in: 0...UInt16.max, using: &generator),
            destinationPort: .random(in: 0...UInt16.max, using: &generator),
            sequenceNumber: .random(in: 0...UInt32.max, using: &generator),
            acknowledgmentNumber: .random(in: 0...UInt32.max, using: &generator),
            tcpFlags: TCPFlags(rawValue: .random(in: 0...255, using: &generator)),
            windowSize: .random(in: 0...UInt16.max, using: &generator),
            identification: .random(in: 0...UInt16.max, using: &generator),
            flowLabel: .random(in: 0...0xF_FFFF, using: &generator))
        let payload = (0..<Int.random(in: 0...1500, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }
        let options = transport == .tcp
            ? (0..<(Int.random(in: 0...10, using: &generator) * 4)).map { _ in UInt8.random(in: 0...255, using: &generator) }
            : []
        var bytes = [UInt8](repeating: 0, count: representation.emittedLength(tcpOptionsLength: options.count, payloadLength: payload.count))
        let written = try bytes.withUnsafeMutableBytes { buffer in
            try options.withUnsafeBytes { options in
                try payload.withUnsafeBytes { payload in
                    try representation.emit(into: buffer, tcpOptions: options, payload: payload)
                }
            }
        }
        XCTAssertEqual(written, bytes.count)
        switch Int.random(in: 0..<3, using: &generator) {
        case 0 where ipv4:
            let optionLength = Int.random(in: 1...10, using: &generator) * 4
            bytes.insert(contentsOf: repeatElement(1, count: optionLength), at: 20)  // NOPs
            bytes[0] = 0x40 | UInt8((20 + optionLength) / 4)
            bytes.setUInt16(UInt16(bytes.count), at: 2)
            bytes.fixIPv4HeaderChecksum()
        case 0:
            // Hop-by-hop then destination options, each with one PadN option.
            let hopByHop: [UInt8] = [60, 0, 1, 4, 0, 0, 0, 0]
            let destination: [UInt8] = [bytes[6], 1, 1, 12] + [UInt8](repeating: 0, count: 12)
            bytes.insert(contentsOf: hopByHop + destination, at: 40)
            bytes[6] = 0
            bytes.setUInt16(UInt16(bytes.count - 40), at: 4)
        default:
            break
        }
        return bytes
    }

    func testIncrementalEqualsFullRecompute() throws {
        var generator = SeededGenerator(seed: 0x7670_6D00)
        for iteration in 0..<4000 {
            let original = try randomPacket(using: &generator)
            let layout = Layout(original)
            XCTAssertTrue(layout.checksumIsValid(original), "emitted packet \(iteration)")
            XCTAssertTrue(try parse(original) { $0.transportChecksumIsValid() })
            let sourcePort = UInt16.random(in: 0...UInt16.max, using: &generator)
            let destinationPort = UInt16.random(in: 0...UInt16.max, using: &generator)

            var incremental = original
            XCTAssertNil(rewrite(&incremental) { packet throws(PacketError) in
                try packet.setSourcePort(sourcePort, checksum: .complete)
                try packet.setDestinationPort(destinationPort, checksum: .complete)
            })

            var recomputed = original
            XCTAssertNil(rewrite(&recomputed) { packet throws(PacketError) in
                try packet.setSourcePort(sourcePort, checksum: .partial)
                try packet.setDestinationPort(destinationPort, checksum: .partial)
            })
            XCTAssertEqual(incremental, recomputed, "iteration \(iteration)")
            XCTAssertTrue(layout.checksumIsValid(incremental), "iteration \(iteration)")

            // Only the two ports and the checksum may differ.
            var expected = original
            expected.setUInt16(sourcePort, at: layout.transportOffset)
            expected.setUInt16(destinationPort, at: layout.transportOffset + 2)
            expected.setUInt16(layout.checksumField(incremental), at: layout.checksumOffset)
            XCTAssertEqual(incremental, expected, "iteration \(iteration)")

            // As the kernel hands it over with NFQA_SKB_CSUMNOTREADY: the field holds the folded
            // pseudo-header sum, not complemented.
            var partial = original
            layout.setChecksumField(&partial, layout.partialChecksum(partial))
            XCTAssertNil(rewrite(&partial) { packet throws(PacketError) in
                XCTAssertEqual(packet.transportChecksum, packet.pseudoHeaderSum)
                try packet.setSourcePort(sourcePort, checksum: .partial)
                try packet.setDestinationPort(destinationPort, checksum: .partial)
                XCTAssertTrue(packet.transportChecksumIsValid())
            })
            XCTAssertEqual(partial, incremental, "iteration \(iteration)")
        }
    }

    func testSamePortKeepsPacket() throws {
        var generator = SeededGenerator(seed: 42)
        for _ in 0..<500 {
            let original = try randomPacket(using: &generator)
            var bytes = original
            XCTAssertNil(rewrite(&bytes) { packet throws(PacketError) in
                try packet.setSourcePort(packet.sourcePort, checksum: .complete)
                try packet.setDestinationPort(packet.destinationPort, checksum: .partial)
            })
            XCTAssertEqual(bytes, original)
        }
    }

    func testRepresentationRoundTrip() throws {
        var generator = SeededGenerator(seed: 791)
        for _ in 0..<500 {
            let bytes = try randomPacket(using: &generator)
            let representation = try parse(bytes) { PacketRepresentation($0) }
            let layout = Layout(bytes)
            let isTCP = layout.protocolNumber == 6
            let headerLength = isTCP ? Int(bytes[layout.transportOffset + 12] >> 4) * 4 : 8
            let options = isTCP ? Array(bytes[(layout.transportOffset + 20)..<(layout.transportOffset + headerLength)]) : []
            let payload = Array(bytes[(layout.transportOffset + headerLength)...])
            var emitted = [UInt8](repeating: 0xAA, count: 1600 + 60)
            let length = try emitted.withUnsafeMutableBytes { buffer in
                try options.withUnsafeBytes { options in
                    try payload.withUnsafeBytes { try representation.emit(into: buffer, tcpOptions: options, payload: $0) }
                }
            }
            let reparsed = try parse(Array(emitted[..<length])) { PacketRepresentation($0) }
            XCTAssertEqual(reparsed, representation)
            XCTAssertTrue(Layout(emitted).checksumIsValid(emitted))
            XCTAssertTrue(emitted[length...].allSatisfy { $0 == 0xAA }, "emit wrote past its length")
        }
    }
}
