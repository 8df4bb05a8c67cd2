import Packet
import XCTest

final class IPv4HeaderTests: XCTestCase {
    private func header<R>(_ bytes: [UInt8], _ body: (inout IPv4Header) throws -> R) throws -> R {
        var copy = bytes
        return try copy.withUnsafeMutableBytes { raw in
            var view = try IPv4Header(checking: raw)
            return try body(&view)
        }
    }

    func testDeconstructSynchronize() throws {
        try header(Fixture.ipv4TCPSynchronize.complete) { header in
            XCTAssertEqual(header.version, 4)
            XCTAssertEqual(header.headerLength, 20)
            XCTAssertEqual(header.differentiatedServices, 0)
            XCTAssertEqual(header.totalLength, 60)
            XCTAssertEqual(header.identification, 32930)
            XCTAssertTrue(header.dontFragment)
            XCTAssertFalse(header.moreFragments)
            XCTAssertEqual(header.fragmentOffset, 0)
            XCTAssertEqual(header.timeToLive, 64)
            XCTAssertEqual(header.protocolNumber, 6)
            XCTAssertEqual(header.headerChecksum, 0xBC17)
            XCTAssertTrue(header.headerChecksumIsValid())
            XCTAssertEqual(header.sourceAddress, IPAddress(127, 0, 0, 1))
            XCTAssertEqual(header.destinationAddress, IPAddress(127, 0, 0, 1))
            XCTAssertEqual(header.options.count, 0)
        }
    }

    func testDeconstructRouterAlertOption() throws {
        try header(Fixture.ipv4UDPRouterAlert.complete) { header in
            XCTAssertEqual(header.headerLength, 24)
            XCTAssertEqual(header.totalLength, 42)
            XCTAssertEqual(header.identification, 15844)
            XCTAssertEqual(header.protocolNumber, 17)
            XCTAssertEqual(header.headerChecksum, 0x69D8)
            XCTAssertTrue(header.headerChecksumIsValid())
            XCTAssertEqual(Array(header.options), [0x94, 0x04, 0x00, 0x00])
        }
    }

    func testDeconstructNoOperationOptions() throws {
        try header(Fixture.ipv4OptionsTCPData.complete) { header in
            XCTAssertEqual(header.headerLength, 24)
            XCTAssertEqual(header.totalLength, 74)
            XCTAssertEqual(header.identification, 26333)
            XCTAssertEqual(header.headerChecksum, 0xD2CD)
            XCTAssertTrue(header.headerChecksumIsValid())
            XCTAssertEqual(Array(header.options), [0x01, 0x01, 0x01, 0x00])
        }
    }

    func testSettersAndHeaderChecksum() throws {
        let original = Fixture.ipv4OptionsTCPData.complete
        var bytes = original
        try bytes.withUnsafeMutableBytes { raw in
            var header = try IPv4Header(checking: raw)
            header.setTimeToLive(1)
            XCTAssertFalse(header.headerChecksumIsValid())
            header.fillHeaderChecksum()
            XCTAssertTrue(header.headerChecksumIsValid())
            header.setTimeToLive(64)
            header.fillHeaderChecksum()
            header.setFragmentation(dontFragment: false, moreFragments: true, offset: 1480)
            XCTAssertFalse(header.dontFragment)
            XCTAssertTrue(header.moreFragments)
            XCTAssertEqual(header.fragmentOffset, 1480)
            header.setFragmentation(dontFragment: true, moreFragments: false, offset: 0)
            header.setSourceAddress(IPAddress(192, 0, 2, 1))
            XCTAssertEqual(header.sourceAddress.description, "192.0.2.1")
            header.setSourceAddress(.loopbackIPv4)
        }
        XCTAssertEqual(bytes, original)
    }

    func testCheckedConstructorErrors() {
        let valid = Fixture.ipv4TCPReset.complete  // total length 40
        func error(_ bytes: [UInt8]) -> PacketError? {
            var copy = bytes
            return copy.withUnsafeMutableBytes { raw in
                do throws(PacketError) {
                    _ = try IPv4Header(checking: raw)
                    return nil
                } catch { return error }
            }
        }
        XCTAssertEqual(error([]), .empty)
        XCTAssertEqual(error([0x65] + valid.dropFirst()), .unknownVersion(6))
        XCTAssertEqual(error(Array(valid.prefix(19))), .truncatedNetworkHeader)
        XCTAssertEqual(error(Array(valid.prefix(39))), .truncated(captured: 39, declared: 40))
        XCTAssertNil(error(valid + [0, 0, 0, 0, 0, 0]))
        for words in 0...15 {
            var bytes = valid
            bytes[0] = 0x40 | UInt8(words)
            XCTAssertEqual(error(bytes), words < 5 || words > 10 ? .badHeaderLength(words) : nil, "IHL \(words)")
        }
        for total in [0, 1, 19] {
            var bytes = valid
            bytes.setUInt16(UInt16(total), at: 2)
            XCTAssertEqual(error(bytes), .badTotalLength(total))
        }
    }
}
