import Packet
import XCTest

final class TCPHeaderTests: XCTestCase {
    /// Runs `body` on the TCP segment of `fixture`'s complete form.
    private func segment<R>(_ bytes: [UInt8], _ body: (inout TCPHeader) throws -> R) throws -> R {
        let layout = Layout(bytes)
        var copy = bytes
        return try copy.withUnsafeMutableBytes { raw in
            var view = try TCPHeader(checking: UnsafeMutableRawBufferPointer(
                rebasing: raw[layout.transportOffset..<layout.transportOffset + layout.transportLength]))
            return try body(&view)
        }
    }

    func testDeconstructSynchronize() throws {
        try segment(Fixture.ipv4TCPSynchronize.complete) { tcp in
            XCTAssertEqual(tcp.sourcePort, 41026)
            XCTAssertEqual(tcp.destinationPort, 40001)
            XCTAssertEqual(tcp.sequenceNumber, 1_202_758_640)
            XCTAssertEqual(tcp.acknowledgmentNumber, 0)
            XCTAssertEqual(tcp.headerLength, 40)
            XCTAssertEqual(tcp.flags, [.syn])
            XCTAssertEqual(tcp.windowSize, 65495)
            XCTAssertEqual(tcp.checksum, 0x5451)
            XCTAssertEqual(tcp.urgentPointer, 0)
            // MSS 65495, SACK permitted, timestamps, NOP, window scale 10.
            XCTAssertEqual(Array(tcp.options), [0x02, 0x04, 0xFF, 0xD7, 0x04, 0x02, 0x08, 0x0A, 0xF7, 0x4E,
                                                0xDC, 0x39, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x03, 0x0A])
            XCTAssertEqual(tcp.payload.count, 0)
        }
    }

    func testDeconstructReset() throws {
        try segment(Fixture.ipv4TCPReset.complete) { tcp in
            XCTAssertEqual(tcp.sourcePort, 40002)
            XCTAssertEqual(tcp.destinationPort, 55292)
            XCTAssertEqual(tcp.sequenceNumber, 0)
            XCTAssertEqual(tcp.acknowledgmentNumber, 2_741_694_017)
            XCTAssertEqual(tcp.headerLength, 20)
            XCTAssertEqual(tcp.flags, [.rst, .ack])
            XCTAssertEqual(tcp.windowSize, 0)
            XCTAssertEqual(tcp.checksum, 0xABE2)
            XCTAssertEqual(tcp.options.count, 0)
            XCTAssertEqual(tcp.payload.count, 0)
        }
    }

    func testDeconstructData() throws {
        let request = Array("GET / HTTP/1.0\r\n\r\n".utf8)
        try segment(Fixture.ipv4TCPData.complete) { tcp in
            XCTAssertEqual(tcp.sourcePort, 41026)
            XCTAssertEqual(tcp.destinationPort, 40001)
            XCTAssertEqual(tcp.sequenceNumber, 1_202_758_641)
            XCTAssertEqual(tcp.acknowledgmentNumber, 969_111_303)
            XCTAssertEqual(tcp.headerLength, 32)
            XCTAssertEqual(tcp.flags, [.psh, .ack])
            XCTAssertEqual(tcp.windowSize, 64)
            XCTAssertEqual(tcp.checksum, 0x73A3)
            XCTAssertEqual(Array(tcp.payload), request)
        }
        try segment(Fixture.ipv4OptionsTCPData.complete) { tcp in
            XCTAssertEqual(tcp.sourcePort, 54000)
            XCTAssertEqual(tcp.destinationPort, 40005)
            XCTAssertEqual(tcp.sequenceNumber, 3_782_700_012)
            XCTAssertEqual(tcp.acknowledgmentNumber, 1_839_383_572)
            XCTAssertEqual(tcp.checksum, 0xB1E7)
            XCTAssertEqual(Array(tcp.payload), request)
        }
        try segment(Fixture.ipv6TCPData.complete) { tcp in
            XCTAssertEqual(tcp.sourcePort, 46728)
            XCTAssertEqual(tcp.destinationPort, 40006)
            XCTAssertEqual(tcp.sequenceNumber, 4_285_881_590)
            XCTAssertEqual(tcp.acknowledgmentNumber, 3_702_437_775)
            XCTAssertEqual(tcp.headerLength, 32)
            XCTAssertEqual(tcp.flags, [.psh, .ack])
            XCTAssertEqual(tcp.checksum, 0x79A5)
            XCTAssertEqual(Array(tcp.payload), request)
        }
        try segment(Fixture.ipv6ExtensionHeadersTCPData.complete) { tcp in
            XCTAssertEqual(tcp.sourcePort, 50184)
            XCTAssertEqual(tcp.destinationPort, 40008)
            XCTAssertEqual(tcp.sequenceNumber, 1_696_916_142)
            XCTAssertEqual(tcp.acknowledgmentNumber, 2_727_551_039)
            XCTAssertEqual(tcp.checksum, 0x5451)
            XCTAssertEqual(Array(tcp.payload), request)
        }
    }

    func testSetters() throws {
        let original = Fixture.ipv4TCPData.complete
        var bytes = original
        let layout = Layout(bytes)
        bytes.withUnsafeMutableBytes { raw in
            var tcp = TCPHeader(unchecked: UnsafeMutableRawBufferPointer(rebasing: raw[layout.transportOffset...]))
            tcp.setSequenceNumber(7)
            tcp.setAcknowledgmentNumber(8)
            tcp.setFlags([.fin, .ack])
            tcp.setWindowSize(9)
            tcp.setUrgentPointer(10)
            tcp.setChecksum(11)
            XCTAssertEqual([tcp.sequenceNumber, tcp.acknowledgmentNumber], [7, 8])
            XCTAssertEqual(tcp.flags, [.fin, .ack])
            XCTAssertEqual([tcp.windowSize, tcp.urgentPointer, tcp.checksum], [9, 10, 11])
        }
        XCTAssertEqual(bytes[layout.transportOffset + 4..<layout.transportOffset + 20],
                       [0, 0, 0, 7, 0, 0, 0, 8, 0x80, 0x11, 0, 9, 0, 11, 0, 10])
    }

    func testFlagsDescription() {
        XCTAssertEqual(TCPFlags([.syn, .ack]).description, "SYN|ACK")
        XCTAssertEqual(TCPFlags().description, "none")
    }

    func testCheckedConstructorErrors() {
        func error(_ segment: [UInt8]) -> PacketError? {
            var copy = segment
            return copy.withUnsafeMutableBytes { raw in
                do throws(PacketError) {
                    _ = try TCPHeader(checking: raw)
                    return nil
                } catch { return error }
            }
        }
        let fixture = Fixture.ipv4TCPSynchronize.complete
        let segment = Array(fixture[20...])  // 40 bytes, data offset 10
        XCTAssertNil(error(segment))
        XCTAssertEqual(error(Array(segment.prefix(19))), .truncatedTransportHeader)
        for words in 0...15 {
            var bytes = segment
            bytes[12] = UInt8(words) << 4
            XCTAssertEqual(error(bytes), words < 5 || words > 10 ? .badDataOffset(words) : nil, "data offset \(words)")
        }
    }
}
