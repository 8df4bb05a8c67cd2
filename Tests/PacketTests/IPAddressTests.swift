import Packet
import XCTest

final class IPAddressTests: XCTestCase {
    func testIPv4() throws {
        let address = try XCTUnwrap(IPAddress("192.0.2.33"))
        XCTAssertTrue(address.isIPv4)
        XCTAssertEqual(address.ipv4Value, 0xC000_0221)
        XCTAssertEqual(address, IPAddress(192, 0, 2, 33))
        XCTAssertEqual(address.high, 0)
        XCTAssertEqual(address.low, 0x0000_FFFF_C000_0221)
        XCTAssertEqual(address.description, "192.0.2.33")
        XCTAssertEqual(IPAddress("0.0.0.0")?.description, "0.0.0.0")
        XCTAssertEqual(IPAddress("255.255.255.255")?.ipv4Value, 0xFFFF_FFFF)
    }

    func testIPv4Rejects() {
        for text in ["", "1.2.3", "1.2.3.4.5", "256.1.1.1", "1..2.3", "1.2.3.", ".1.2.3", "01.2.3.4", "1.2.3.4 ",
                     "a.b.c.d", "1.2.3.-4", "1234.1.1.1"] {
            XCTAssertNil(IPAddress(text), text)
        }
    }

    func testIPv6Canonical() {
        // RFC 5952 §4: lowercase, no leading zeros, longest zero run compressed (first on a tie),
        // a single zero group never compressed.
        let cases: [(String, String)] = [
            ("::", "::"),
            ("::1", "::1"),
            ("1::", "1::"),
            ("2001:DB8:0:0:0:0:2:1", "2001:db8::2:1"),
            ("2001:0db8:0000:0000:0000:0000:0002:0001", "2001:db8::2:1"),
            ("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"),
            ("2001:0:0:1:0:0:0:1", "2001:0:0:1::1"),
            ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),
            ("fe80::fc:ff:fe00:1", "fe80::fc:ff:fe00:1"),
            ("fd00::2", "fd00::2"),
            ("1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8"),
            ("1:2:3:4:5:6::8", "1:2:3:4:5:6:0:8"),
            ("::ffff:192.0.2.1", "192.0.2.1"),
            ("::FFFF:c000:0201", "192.0.2.1"),
            ("64:ff9b::192.0.2.33", "64:ff9b::c000:221"),
            ("::1.2.3.4", "::102:304"),
        ]
        for (input, canonical) in cases {
            let address = IPAddress(input)
            XCTAssertEqual(address?.description, canonical, input)
            XCTAssertEqual(address.flatMap { IPAddress($0.description) }, address, "round trip \(input)")
        }
        XCTAssertEqual(IPAddress("::1"), .loopbackIPv6)
        XCTAssertFalse(IPAddress("::1")!.isIPv4)
        XCTAssertNil(IPAddress("::1")!.ipv4Value)
        XCTAssertEqual(IPAddress("::ffff:127.0.0.1"), .loopbackIPv4)
    }

    func testIPv6Rejects() {
        for text in [":", ":::", "1:2:3:4:5:6:7", "1:2:3:4:5:6:7:8:9", "1::2::3", ":1::", "1:", ":1", "12345::",
                     "g::", "1:2:3:4:5:6:7::8", "1:2:3:4:5:6:1.2.3.4:5", "1:2:3:4:5:6:7:1.2.3.4", "fe80::1%eth0",
                     "::1.2.3", "1.2.3.4::", "::ffff:01.2.3.4"] {
            XCTAssertNil(IPAddress(text), text)
        }
    }

    func testRandomRoundTrips() {
        var generator = SeededGenerator(seed: 4291)
        for _ in 0..<5000 {
            // Sparse groups give the zero runs that compression has to handle.
            var high: UInt64 = 0
            var low: UInt64 = 0
            for index in 0..<8 {
                let group: UInt64 = Bool.random(using: &generator) ? 0 : UInt64.random(in: 0...0xFFFF, using: &generator)
                if index < 4 { high = high << 16 | group } else { low = low << 16 | group }
            }
            let address = IPAddress(high: high, low: low)
            XCTAssertEqual(IPAddress(address.description), address, address.description)
            let ipv4 = IPAddress(ipv4: UInt32.random(in: 0...UInt32.max, using: &generator))
            XCTAssertEqual(IPAddress(ipv4.description), ipv4)
        }
    }

    func testGroupsAndOrdering() {
        let address = IPAddress("2001:db8::2:1")!
        XCTAssertEqual((0..<8).map(address.group), [0x2001, 0x0DB8, 0, 0, 0, 0, 2, 1])
        XCTAssertLessThan(IPAddress("::1")!, IPAddress("::2")!)
        XCTAssertLessThan(IPAddress("::ffff")!, IPAddress("1::")!)
    }

    /// Network-order bytes as conntrack, sock_diag and the BPF maps hold them.
    func testAnAddressFromItsBytes() {
        XCTAssertEqual(IPAddress(bytes: [198, 18, 1, 2] as [UInt8]), IPAddress(198, 18, 1, 2))
        XCTAssertEqual(IPAddress(bytes: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 198, 18, 1, 2] as [UInt8]), IPAddress(198, 18, 1, 2))
        XCTAssertEqual(IPAddress(bytes: [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7] as [UInt8]), IPAddress("2001:db8::7"))
        let buffer: [UInt8] = [9, 9, 10, 0, 0, 1, 9]
        XCTAssertEqual(IPAddress(bytes: buffer[2..<6]), IPAddress(10, 0, 0, 1), "a slice that does not start at 0")
        XCTAssertNil(IPAddress(bytes: [1, 2, 3] as [UInt8]))
        // And back: 4 bytes for IPv4 (conntrack's tuples), 16 for IPv6.
        XCTAssertEqual(IPAddress(198, 18, 1, 2).bytes, [198, 18, 1, 2])
        XCTAssertEqual(IPAddress("2001:db8::7")?.bytes, [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7])
        XCTAssertEqual(IPAddress.loopbackIPv6.bytes, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1])
        XCTAssertNil(IPAddress(bytes: [UInt8](repeating: 0, count: 15)))
    }
}
