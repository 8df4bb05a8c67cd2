import Packet
import Steering
import XCTest

/// The rule trie's keys, byte for byte, as bpf/steer.bpf.c's `struct rule_key` reads them.
final class SteeringRuleTests: XCTestCase {
    func testAnIPv4NetworkRuleKey() {
        let rule = SteeringRule(transport: .tcp, initialPort: 9000, network: IPAddress(198, 18, 1, 77), length: 96 + 24,
                                clientPort: nil, slot: 40000)
        XCTAssertEqual(rule.key, [
            152, 0, 0, 0,                  // prefixlen 32 + 120, little-endian
            6, 0, 0x23, 0x28,              // TCP, reserved, port 9000
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 198, 18, 1, 0,  // ::ffff:198.18.1.0, host bits cleared
            0, 0, 0, 0,                    // no client port, padding
        ])
    }

    func testAnIPv6AddressAndPortRuleKey() throws {
        let address = try XCTUnwrap(IPAddress("2001:db8::7"))
        let rule = SteeringRule(transport: .udp, initialPort: 53, network: address, length: 128, clientPort: 5555, slot: 2)
        XCTAssertEqual(rule.key, [
            176, 0, 0, 0,
            17, 0, 0, 53,
            0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7,
            0x15, 0xB3, 0, 0,
        ])
        XCTAssertEqual(SteeringRule(key: rule.key, slot: 2), rule)
    }

    func testKeysReadBackAsTheRulesTheyCameFrom() {
        let rules = [
            SteeringRule(transport: .tcp, initialPort: 80, network: .any, length: 0, clientPort: nil, slot: 10),
            SteeringRule(transport: .tcp, initialPort: 80, network: IPAddress(198, 18, 3, 7), length: 128, clientPort: nil, slot: 12),
            SteeringRule(transport: .udp, initialPort: 65535, network: IPAddress(10, 0, 0, 0), length: 104, clientPort: nil, slot: 1 << 17),
        ]
        for rule in rules { XCTAssertEqual(SteeringRule(key: rule.key, slot: rule.slot), rule) }
    }

    func testMalformedKeysAreRejected() {
        let key = SteeringRule(transport: .tcp, initialPort: 80, network: .any, length: 0, clientPort: nil, slot: 0).key
        XCTAssertNil(SteeringRule(key: Array(key.dropLast()), slot: 0))
        var badProtocol = key
        badProtocol[4] = 1
        XCTAssertNil(SteeringRule(key: badProtocol, slot: 0))
        var tooLong = key
        tooLong[0] = 177
        XCTAssertNil(SteeringRule(key: tooLong, slot: 0))
    }

    func testSlotsFollowTheVirtualPortAndTransport() {
        XCTAssertEqual(SteeringSlot.base(transport: .tcp, virtualPort: 20017), 40034)
        XCTAssertEqual(SteeringSlot.base(transport: .udp, virtualPort: 20017), 131072 + 40034)
        XCTAssertLessThan(SteeringSlot.base(transport: .udp, virtualPort: 65535) + 1, SocketSteering.socketMapSize)
    }
}
