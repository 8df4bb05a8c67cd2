import Packet
import XCTest

final class InternetChecksumTests: XCTestCase {
    func testRFC1071Example() {
        // RFC 1071 §3: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
        let bytes: [UInt8] = [0x00, 0x01, 0xF2, 0x03, 0xF4, 0xF5, 0xF6, 0xF7]
        XCTAssertEqual(bytes.withUnsafeBytes { InternetChecksum.sum($0) }, 0xDDF2)
        XCTAssertEqual(bytes.withUnsafeBytes { InternetChecksum.checksum($0) }, 0x220D)
    }

    func testEmptyAndOddLengths() {
        XCTAssertEqual([UInt8]().withUnsafeBytes { InternetChecksum.sum($0) }, 0)
        XCTAssertEqual([UInt8]([0xAB]).withUnsafeBytes { InternetChecksum.sum($0) }, 0xAB00)
        XCTAssertEqual([UInt8]([0xAB, 0xCD, 0xEF]).withUnsafeBytes { InternetChecksum.sum($0) }, 0x9ACE)  // abcd + ef00 = 1_9acd, carry folded in
    }

    func testSumMatchesReferenceForEveryLengthAndAlignment() {
        var generator = SeededGenerator(seed: 1071)
        for length in 0...300 {
            for start in 0..<8 {
                var bytes = (0..<(start + length)).map { _ in UInt8.random(in: 0...255, using: &generator) }
                if length % 7 == 0 { for index in start..<bytes.count { bytes[index] = 0xFF } }
                let expected = referenceSum(bytes[start...])
                let actual = bytes.withUnsafeBytes { InternetChecksum.sum(UnsafeRawBufferPointer(rebasing: $0[start...])) }
                XCTAssertEqual(actual, expected, "length \(length) start \(start)")
            }
        }
    }

    func testAddIsOnesComplement() {
        XCTAssertEqual(InternetChecksum.add(0xFFFF, 0x0001), 0x0001)
        XCTAssertEqual(InternetChecksum.add(0x8000, 0x8000), 0x0001)
        XCTAssertEqual(InternetChecksum.add(0x1234, 0x0000), 0x1234)
        XCTAssertEqual(InternetChecksum.add(0xFFFF, 0x0000), 0xFFFF)
    }

    func testRFC1624Example() {
        // RFC 1624 §4: eqn. 3 gives 0x0000 where eqn. 2 would give the -0 form 0xFFFF.
        XCTAssertEqual(InternetChecksum.update(0xDD2F, old: 0x5555, new: 0x3285), 0x0000)
    }

    func testUpdateMatchesRecompute() {
        var generator = SeededGenerator(seed: 1624)
        for _ in 0..<2000 {
            var words = (0..<12).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let before = ~referenceSum(words)
            let index = Int.random(in: 0..<6, using: &generator) * 2
            let old = words.uint16(at: index)
            let new = UInt16.random(in: 0...UInt16.max, using: &generator)
            words.setUInt16(new, at: index)
            XCTAssertEqual(InternetChecksum.update(before, old: old, new: new), ~referenceSum(words))
        }
    }

    func testPseudoHeaderSum() {
        let fixture = Fixture.ipv6TCPData.captured
        let layout = Layout(fixture)
        let sum = fixture.withUnsafeBytes {
            InternetChecksum.pseudoHeaderSum(
                addresses: UnsafeRawBufferPointer(rebasing: $0[8..<40]), protocolNumber: 6,
                transportLength: layout.transportLength)
        }
        XCTAssertEqual(sum, layout.partialChecksum(fixture))
        // The loopback capture holds exactly this in its checksum field.
        XCTAssertEqual(sum, layout.checksumField(fixture))
    }
}
