@testable import Policy
import Packet
import XCTest

/// The overlap index against the pairwise definition (`SourceMatch.overlaps`), on random
/// rules from a small address space so that overlaps are common: after each rule, the index
/// finds an earlier overlapping rule exactly when one exists, and the one it names does
/// overlap. As in the parser, a set stops growing at its first overlap.
final class SourceOverlapIndexTests: XCTestCase {
    private struct Generator: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return state
        }
    }

    private func randomMatch(_ random: inout Generator) -> SourceMatch {
        // 198.18.0.0/22: 1,024 addresses; lengths from /20 to /32, some address:port.
        let host = UInt32.random(in: 0..<1024, using: &random)
        let address = IPAddress(ipv4: 0xC612_0000 | host)
        switch Int.random(in: 0..<4, using: &random) {
        case 0: return .address(address)
        case 1: return .addressPort(address, UInt16.random(in: 5000...5002, using: &random))
        default:
            let length = Int.random(in: 20...32, using: &random)
            return .prefix(AddressMask(length: 96 + length).network(of: address), length: 96 + length)
        }
    }

    func testFindsAnOverlapExactlyWhenThePairwiseCheckDoes() {
        var random = Generator(state: 0x5EED)
        var overlapsFound = 0
        for _ in 0..<2_000 {
            var index = SourceOverlapIndex()
            var recorded: [SourceMatch] = []
            for _ in 0..<Int.random(in: 1...40, using: &random) {
                let match = randomMatch(&random)
                let expected = recorded.firstIndex { $0.overlaps(match) }
                let found = index.add(match)
                XCTAssertEqual(found != nil, expected != nil, "\(match) after \(recorded)")
                if let found {
                    XCTAssertTrue(recorded[found].overlaps(match), "\(recorded[found]) named for \(match)")
                    overlapsFound += 1
                    break
                }
                recorded.append(match)
            }
        }
        XCTAssertGreaterThan(overlapsFound, 500, "the generator makes overlaps often enough to test them")
    }

    func testIPv6AndIPv4DoNotMeet() {
        var index = SourceOverlapIndex()
        XCTAssertNil(index.add(.prefix(IPAddress(high: 0x2001_0db8_0000_0000, low: 0), length: 32)))
        XCTAssertNil(index.add(.address(IPAddress(198, 18, 1, 2))))
        XCTAssertEqual(index.add(.addressPort(IPAddress(high: 0x2001_0db8_0000_0000, low: 1), 5555)), 0)
    }
}
