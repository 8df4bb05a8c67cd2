import XCTest
import Packet
import Policy

final class SourceMatchTests: XCTestCase {
    func testTextForms() {
        XCTAssertEqual(SourceMatch("198.18.1.0/24"), .prefix(IPAddress(198, 18, 1, 0), length: 120))
        XCTAssertEqual(SourceMatch("0.0.0.0/0"), .prefix(IPAddress(0, 0, 0, 0), length: 96))
        XCTAssertEqual(SourceMatch("2001:db8::/32"), .prefix(IPAddress("2001:db8::")!, length: 32))
        XCTAssertEqual(SourceMatch("::/0"), .prefix(.any, length: 0))
        XCTAssertEqual(SourceMatch("198.18.3.7"), .address(IPAddress(198, 18, 3, 7)))
        XCTAssertEqual(SourceMatch("2001:db8::1"), .address(IPAddress("2001:db8::1")!))
        XCTAssertEqual(SourceMatch("198.18.4.1:5555"), .addressPort(IPAddress(198, 18, 4, 1), 5555))
        XCTAssertEqual(SourceMatch("[2001:db8::1]:5555"), .addressPort(IPAddress("2001:db8::1")!, 5555))
        XCTAssertEqual(SourceMatch("[2001:db8::1]"), .address(IPAddress("2001:db8::1")!))
    }

    func testRejectsBadText() {
        for text in ["198.18.1.5/24", "198.18.1.0/33", "2001:db8::/129", "198.18.1.0/", "198.18.1.0/x",
                     "198.18.1.300", "198.18.4.1:0", "198.18.4.1:70000", "[2001:db8::1", "[2001:db8::1]5555",
                     "[2001:db8::1]:", "", "acme", "2001:db8::1/64"] {
            XCTAssertNil(SourceMatch(text), text)
        }
    }

    func testDescriptionRoundTrips() {
        for text in ["198.18.1.0/24", "0.0.0.0/0", "2001:db8::/32", "::/0", "198.18.3.7", "2001:db8::1",
                     "198.18.4.1:5555", "[2001:db8::1]:5555"] {
            XCTAssertEqual(SourceMatch(text)?.description, text)
        }
        // IPv6 spelling of an IPv4-mapped prefix reads as the IPv4 prefix.
        XCTAssertEqual(SourceMatch("::ffff:198.18.0.0/112")?.description, "198.18.0.0/16")
    }

    func testContains() {
        let prefix = SourceMatch("198.18.1.0/24")!
        XCTAssertTrue(prefix.contains(IPAddress(198, 18, 1, 0), port: 1))
        XCTAssertTrue(prefix.contains(IPAddress(198, 18, 1, 255), port: 1))
        XCTAssertFalse(prefix.contains(IPAddress(198, 18, 2, 0), port: 1))
        XCTAssertFalse(prefix.contains(IPAddress("::c612:100")!, port: 1), "an IPv4 prefix never matches IPv6")
        let addressPort = SourceMatch("198.18.4.1:5555")!
        XCTAssertTrue(addressPort.contains(IPAddress(198, 18, 4, 1), port: 5555))
        XCTAssertFalse(addressPort.contains(IPAddress(198, 18, 4, 1), port: 5556))
    }

    func testOverlaps() {
        func overlaps(_ first: String, _ second: String) -> Bool {
            let a = SourceMatch(first)!, b = SourceMatch(second)!
            XCTAssertEqual(a.overlaps(b), b.overlaps(a), "overlap is symmetric")
            return a.overlaps(b)
        }
        XCTAssertTrue(overlaps("198.18.0.0/16", "198.18.2.0/24"))
        XCTAssertTrue(overlaps("198.18.3.7", "198.18.3.7:5555"))
        XCTAssertTrue(overlaps("198.18.3.0/24", "198.18.3.7:5555"))
        XCTAssertTrue(overlaps("198.18.3.7", "198.18.3.7"))
        XCTAssertTrue(overlaps("0.0.0.0/0", "198.18.3.7"))
        XCTAssertTrue(overlaps("::/0", "198.18.3.7"), "IPv4 addresses are IPv4-mapped, inside ::/0")
        XCTAssertFalse(overlaps("198.18.1.0/24", "198.18.2.0/24"))
        XCTAssertFalse(overlaps("198.18.3.7:5555", "198.18.3.7:5556"))
        XCTAssertFalse(overlaps("0.0.0.0/0", "2001:db8::/32"))
        XCTAssertFalse(overlaps("2001:db8::/32", "2001:db9::1"))
    }
}
