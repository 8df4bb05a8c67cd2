import Packet
import XCTest

/// The MSS option of a SYN lowered for NFQUEUE's copy limit. Expected bytes were computed
/// by a separate byte-wise RFC 1071 checksum in Python, not by the code under test.
final class SegmentSizeTests: XCTestCase {
    /// `Fixture.ipv4TCPSynchronize.complete` (loopback's MSS 65,495) with MSS 65,491.
    static let clamped: [UInt8] = [
        0x45, 0x00, 0x00, 0x3c, 0x80, 0xa2, 0x40, 0x00, 0x40, 0x06, 0xbc, 0x17, 0x7f, 0x00, 0x00, 0x01,
        0x7f, 0x00, 0x00, 0x01, 0xa0, 0x42, 0x9c, 0x41, 0x47, 0xb0, 0xa3, 0xf0, 0x00, 0x00, 0x00, 0x00,
        0xa0, 0x02, 0xff, 0xd7, 0x54, 0x55, 0x00, 0x00, 0x02, 0x04, 0xff, 0xd3, 0x04, 0x02, 0x08, 0x0a,
        0xf7, 0x4e, 0xdc, 0x39, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x03, 0x0a,
    ]
    /// A SYN whose options are NOP, MSS 65,495, NOP×3: the MSS value starts at an odd offset.
    static let oddOffset: [UInt8] = [
        0x45, 0x00, 0x00, 0x30, 0x80, 0xa2, 0x40, 0x00, 0x40, 0x06, 0xbc, 0x23, 0x7f, 0x00, 0x00, 0x01,
        0x7f, 0x00, 0x00, 0x01, 0xa0, 0x42, 0x9c, 0x41, 0x47, 0xb0, 0xa3, 0xf0, 0x00, 0x00, 0x00, 0x00,
        0x70, 0x02, 0xff, 0xd7, 0x8b, 0xd7, 0x00, 0x00, 0x01, 0x02, 0x04, 0xff, 0xd7, 0x01, 0x01, 0x01,
    ]
    static let oddOffsetClamped: [UInt8] = [
        0x45, 0x00, 0x00, 0x30, 0x80, 0xa2, 0x40, 0x00, 0x40, 0x06, 0xbc, 0x23, 0x7f, 0x00, 0x00, 0x01,
        0x7f, 0x00, 0x00, 0x01, 0xa0, 0x42, 0x9c, 0x41, 0x47, 0xb0, 0xa3, 0xf0, 0x00, 0x00, 0x00, 0x00,
        0x70, 0x02, 0xff, 0xd7, 0x8f, 0xd7, 0x00, 0x00, 0x01, 0x02, 0x04, 0xff, 0xd3, 0x01, 0x01, 0x01,
    ]

    private func clamp(_ bytes: inout [UInt8], to limit: UInt16, _ state: ChecksumState) -> Bool {
        var changed = false
        XCTAssertNil(rewrite(&bytes) { packet in changed = packet.clampMaximumSegmentSize(to: limit, checksum: state) })
        return changed
    }

    func testALargerMSSIsLoweredAndTheChecksumUpdated() throws {
        var bytes = Fixture.ipv4TCPSynchronize.complete
        XCTAssertEqual(try parse(bytes) { $0.maximumSegmentSize }, 65495)
        XCTAssertTrue(clamp(&bytes, to: 65491, .complete))
        XCTAssertEqual(bytes, Self.clamped)
        XCTAssertTrue(try parse(bytes) { $0.transportChecksumIsValid() })
    }

    func testAPartialChecksumIsComputedInFull() {
        var bytes = Fixture.ipv4TCPSynchronize.captured
        XCTAssertTrue(clamp(&bytes, to: 65491, .partial))
        XCTAssertEqual(bytes, Self.clamped)
    }

    func testAnMSSAtAnOddOffsetUpdatesBothWordsItTouches() throws {
        var bytes = Self.oddOffset
        XCTAssertTrue(try parse(bytes) { $0.transportChecksumIsValid() })
        XCTAssertEqual(try parse(bytes) { $0.maximumSegmentSize }, 65495)
        XCTAssertTrue(clamp(&bytes, to: 65491, .complete))
        XCTAssertEqual(bytes, Self.oddOffsetClamped)
    }

    func testWhatNeedsNoChangeIsLeftAlone() {
        // Within the limit already.
        var bytes = Fixture.ipv4TCPSynchronize.complete
        XCTAssertFalse(clamp(&bytes, to: 65495, .complete))
        XCTAssertEqual(bytes, Fixture.ipv4TCPSynchronize.complete)
        // Not a SYN; not TCP.
        for fixture in [Fixture.ipv4TCPData, .ipv6TCPData, .ipv4TCPReset, .ipv4UDP, .ipv6UDP] {
            var other = fixture.complete
            XCTAssertFalse(clamp(&other, to: 1000, .complete), fixture.name)
            XCTAssertEqual(other, fixture.complete, fixture.name)
        }
    }

    /// Options that do not parse (a zero length, one running past the header, an MSS of the
    /// wrong length) are not walked past, and nothing is written.
    func testOptionsThatDoNotParseAreNotTouched() {
        let broken: [(Int, [UInt8])] = [
            (40, [0x08, 0x00]),  // timestamps' length 0 at the first option
            (40, [0x02, 0x20]),  // MSS length 32, past the header
            (40, [0x02, 0x03]),  // MSS length 3
        ]
        for (offset, patch) in broken {
            var bytes = Fixture.ipv4TCPSynchronize.complete
            bytes.replaceSubrange(offset..<offset + patch.count, with: patch)
            let before = bytes
            XCTAssertFalse(clamp(&bytes, to: 1000, .complete), "\(patch)")
            XCTAssertEqual(bytes, before)
        }
    }
}
