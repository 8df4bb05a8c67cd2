
import Packet
import XCTest

/// struct sockaddr_in / sockaddr_in6 as a program passes them to bind(), byte for byte.
final class SocketAddressTests: XCTestCase {
    // AF_INET (2, host order), port 9000 (0x2328), 198.18.0.1, 8 bytes of zero padding.
    let ipv4: [UInt8] = [0x02, 0x00, 0x23, 0x28, 198, 18, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]
    // AF_INET6 (10), port 9000, flow info 0x12345678, 2001:db8::7, scope id 3.
    let ipv6: [UInt8] = [0x0A, 0x00, 0x23, 0x28, 0x12, 0x34, 0x56, 0x78,
                         0x20, 0x01, 0x0D, 0xB8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7,
                         0x03, 0x00, 0x00, 0x00]

    func testIPv4FieldByField() throws {
        let address = try XCTUnwrap(SocketAddress(bytes: ipv4))
        XCTAssertEqual(address.family, .ipv4)
        XCTAssertEqual(address.port, 9000)
        XCTAssertEqual(address.address, IPAddress(198, 18, 0, 1))
        XCTAssertEqual(address.description, "198.18.0.1:9000")
    }

    func testIPv6KeepsFlowInfoAndScopeWhenThePortChanges() throws {
        var address = try XCTUnwrap(SocketAddress(bytes: ipv6))
        XCTAssertEqual(address.family, .ipv6)
        XCTAssertEqual(address.address, IPAddress("2001:db8::7"))
        address.port = 20017
        var expected = ipv6
        expected[2] = 0x4E
        expected[3] = 0x31
        XCTAssertEqual(address.bytes, expected)
        XCTAssertEqual(address.description, "[2001:db8::7]:20017")
    }

    func testLongerBuffersAreCutToTheFamilysLength() throws {
        XCTAssertEqual(try XCTUnwrap(SocketAddress(bytes: ipv4 + [1, 2, 3])).bytes, ipv4)
    }

    func testOtherFamiliesAndShortInputAreNotOurs() {
        XCTAssertNil(SocketAddress(bytes: [0x01, 0x00] + Array("/run/x".utf8)))  // AF_UNIX
        XCTAssertNil(SocketAddress(bytes: ipv4.prefix(15)))
        XCTAssertNil(SocketAddress(bytes: ipv6.prefix(27)))
        XCTAssertNil(SocketAddress(bytes: [0x02]))
    }

    func testConstructedWildcards() {
        XCTAssertEqual(SocketAddress(IPAddress(ipv4: 0), port: 0).bytes, [2, 0] + [UInt8](repeating: 0, count: 14))
        XCTAssertEqual(SocketAddress(.any, port: 5, family: .ipv6).bytes, [10, 0, 0, 5] + [UInt8](repeating: 0, count: 24))
        // An IPv4 address for an IPv6 socket: IPv4-mapped.
        XCTAssertEqual(SocketAddress(IPAddress(198, 18, 0, 1), port: 9000, family: .ipv6).bytes,
                       [10, 0, 0x23, 0x28, 0, 0, 0, 0] + [UInt8](repeating: 0, count: 10) + [0xFF, 0xFF, 198, 18, 0, 1, 0, 0, 0, 0])
        XCTAssertEqual(SocketAddress(IPAddress(198, 18, 0, 1), port: 9000).bytes, ipv4)
    }
}
