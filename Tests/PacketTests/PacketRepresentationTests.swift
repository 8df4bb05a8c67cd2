import Packet
import XCTest

final class PacketRepresentationTests: XCTestCase {
    /// Emitting the kernel's own RST reproduces it byte for byte.
    func testEmitReproducesCapturedReset() throws {
        let fixture = Fixture.ipv4TCPReset.complete
        let representation = try parse(fixture) { PacketRepresentation($0) }
        XCTAssertEqual(representation.tcpFlags, [.rst, .ack])
        XCTAssertEqual(representation.acknowledgmentNumber, 2_741_694_017)
        var bytes = [UInt8](repeating: 0, count: representation.emittedLength(payloadLength: 0))
        try bytes.withUnsafeMutableBytes { _ = try representation.emit(into: $0) }
        XCTAssertEqual(bytes, fixture)
    }

    func testEmitUDPv6MatchesCapture() throws {
        let fixture = Fixture.ipv6UDP.complete
        let representation = try parse(fixture) { PacketRepresentation($0) }
        let payload = Array("vpm probe\n".utf8)
        var bytes = [UInt8](repeating: 0, count: representation.emittedLength(payloadLength: payload.count))
        try bytes.withUnsafeMutableBytes { buffer in
            try payload.withUnsafeBytes { _ = try representation.emit(into: buffer, payload: $0) }
        }
        XCTAssertEqual(bytes, fixture)
    }

    func testEmitErrors() {
        let representation = PacketRepresentation(
            sourceAddress: IPAddress("2001:db8::1")!, destinationAddress: IPAddress("2001:db8::2")!,
            transportProtocol: .tcp, sourcePort: 1, destinationPort: 2)
        var small = [UInt8](repeating: 0, count: 59)
        XCTAssertThrowsError(try small.withUnsafeMutableBytes { try representation.emit(into: $0) }) { error in
            XCTAssertEqual(error as? PacketError, .truncated(captured: 59, declared: 60))
        }
        XCTAssertTrue(small.allSatisfy { $0 == 0 })
        var buffer = [UInt8](repeating: 0, count: 200)
        let badOptions: [UInt8] = [1, 1, 1]
        XCTAssertThrowsError(try buffer.withUnsafeMutableBytes { buffer in
            try badOptions.withUnsafeBytes { try representation.emit(into: buffer, tcpOptions: $0) }
        }) { error in
            XCTAssertEqual(error as? PacketError, .badDataOffset(5))
        }
        let huge = [UInt8](repeating: 0, count: 65_536)
        var large = [UInt8](repeating: 0, count: 70_000)
        XCTAssertThrowsError(try large.withUnsafeMutableBytes { buffer in
            try huge.withUnsafeBytes { try representation.emit(into: buffer, payload: $0) }
        }) { error in
            XCTAssertEqual(error as? PacketError, .badTotalLength(40 + 20 + 65_536))
        }
    }
}
