import XCTest
import Packet
import Policy

final class SourceMatcherTests: XCTestCase {
    private func matcher(_ rules: [(String, AID)]) -> SourceMatcher {
        SourceMatcher(rules.map { SourceRule(match: SourceMatch($0.0)!, aid: $0.1) })
    }

    private func address(_ text: String) -> IPAddress {
        IPAddress(text)!
    }

    func testPrefixBoundaries() {
        let matcher = matcher([("198.18.1.0/24", "acme"), ("198.18.2.7/32", "globex")])
        XCTAssertEqual(matcher.aid(for: address("198.18.1.0"), port: 40000), "acme")
        XCTAssertEqual(matcher.aid(for: address("198.18.1.255"), port: 40000), "acme")
        XCTAssertNil(matcher.aid(for: address("198.18.0.255"), port: 40000))
        XCTAssertNil(matcher.aid(for: address("198.18.2.0"), port: 40000))
        XCTAssertEqual(matcher.aid(for: address("198.18.2.7"), port: 1), "globex")
        XCTAssertNil(matcher.aid(for: address("198.18.2.8"), port: 1))
    }

    func testIPv4SlashZeroMatchesEveryIPv4AddressAndNoIPv6() {
        let matcher = matcher([("0.0.0.0/0", "acme")])
        XCTAssertEqual(matcher.aid(for: address("0.0.0.0"), port: 1), "acme")
        XCTAssertEqual(matcher.aid(for: address("255.255.255.255"), port: 1), "acme")
        XCTAssertNil(matcher.aid(for: address("2001:db8::1"), port: 1))
        XCTAssertNil(matcher.aid(for: address("::1"), port: 1))
    }

    func testIPv6SlashZeroMatchesEverything() {
        let matcher = matcher([("::/0", "acme")])
        XCTAssertEqual(matcher.aid(for: address("2001:db8::1"), port: 1), "acme")
        XCTAssertEqual(matcher.aid(for: address("198.18.0.1"), port: 1), "acme")
    }

    func testIPv6Prefixes() {
        let matcher = matcher([("2001:db8::/32", "acme"), ("2001:db8:1::/48", "globex"), ("2001:db8:2::1/128", "initech")])
        XCTAssertEqual(matcher.aid(for: address("2001:db8:ffff::1"), port: 1), "acme")
        XCTAssertEqual(matcher.aid(for: address("2001:db8:1::1"), port: 1), "globex", "the longer prefix wins")
        XCTAssertEqual(matcher.aid(for: address("2001:db8:1:ffff:ffff:ffff:ffff:ffff"), port: 1), "globex")
        XCTAssertEqual(matcher.aid(for: address("2001:db8:2::1"), port: 1), "initech")
        XCTAssertEqual(matcher.aid(for: address("2001:db8:2::2"), port: 1), "acme")
        XCTAssertNil(matcher.aid(for: address("2001:db9::"), port: 1))
        XCTAssertNil(matcher.aid(for: address("2001:db7:ffff:ffff:ffff:ffff:ffff:ffff"), port: 1))
    }

    func testPrefixesAcrossTheHalves() {
        // /64 ends exactly at the high half; /65 and /127 reach into the low half.
        let matcher = matcher([("2001:db8:0:1::/64", "acme"), ("2001:db8:0:2:8000::/65", "globex"), ("2001:db8:0:3::/127", "initech")])
        XCTAssertEqual(matcher.aid(for: address("2001:db8:0:1:ffff:ffff:ffff:ffff"), port: 1), "acme")
        XCTAssertEqual(matcher.aid(for: address("2001:db8:0:2:8000::1"), port: 1), "globex")
        XCTAssertNil(matcher.aid(for: address("2001:db8:0:2:7fff::1"), port: 1))
        XCTAssertEqual(matcher.aid(for: address("2001:db8:0:3::1"), port: 1), "initech")
        XCTAssertNil(matcher.aid(for: address("2001:db8:0:3::2"), port: 1))
    }

    func testAddressPortIsExact() {
        let matcher = matcher([("198.18.4.1:5555", "acme"), ("[2001:db8::1]:5555", "globex")])
        XCTAssertEqual(matcher.aid(for: address("198.18.4.1"), port: 5555), "acme")
        XCTAssertNil(matcher.aid(for: address("198.18.4.1"), port: 5556))
        XCTAssertNil(matcher.aid(for: address("198.18.4.2"), port: 5555))
        XCTAssertEqual(matcher.aid(for: address("2001:db8::1"), port: 5555), "globex")
        XCTAssertNil(matcher.aid(for: address("2001:db8::1"), port: 5554))
    }

    func testSingleAddressMatchesAnyPort() {
        let matcher = matcher([("198.18.3.7", "globex"), ("2001:db8::7", "acme")])
        XCTAssertEqual(matcher.aid(for: address("198.18.3.7"), port: 1), "globex")
        XCTAssertEqual(matcher.aid(for: address("198.18.3.7"), port: 65535), "globex")
        XCTAssertEqual(matcher.aid(for: address("2001:db8::7"), port: 80), "acme")
        XCTAssertNil(matcher.aid(for: address("::ffff:198.18.3.8"), port: 1))
    }

    func testOverlappingRulesFromCodePreferTheMostSpecific() {
        let matcher = matcher([("198.18.0.0/16", "acme"), ("198.18.3.7", "globex"), ("198.18.3.7:5555", "initech")])
        XCTAssertEqual(matcher.aid(for: address("198.18.3.7"), port: 5555), "initech")
        XCTAssertEqual(matcher.aid(for: address("198.18.3.7"), port: 5556), "globex")
        XCTAssertEqual(matcher.aid(for: address("198.18.3.8"), port: 5555), "acme")
    }

    func testNoRulesMatchNothing() {
        let matcher = SourceMatcher([])
        XCTAssertTrue(matcher.isEmpty)
        XCTAssertNil(matcher.aid(for: address("198.18.1.1"), port: 1))
    }

    func testTheExampleConfiguration() throws {
        let matcher = try Configuration.parse(Configuration.example).makeSourceMatcher()
        XCTAssertEqual(matcher.aid(for: address("198.18.1.20"), port: 40000), "acme")
        XCTAssertEqual(matcher.aid(for: address("198.18.2.20"), port: 40000), "globex")
        XCTAssertEqual(matcher.aid(for: address("198.18.3.7"), port: 40000), "globex")
        XCTAssertEqual(matcher.aid(for: address("198.18.4.1"), port: 5555), "acme")
        XCTAssertNil(matcher.aid(for: address("198.18.4.1"), port: 5556))
        XCTAssertNil(matcher.aid(for: address("198.19.1.20"), port: 40000))
    }
}
