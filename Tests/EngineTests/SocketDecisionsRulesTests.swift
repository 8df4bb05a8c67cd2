@testable import Engine
import Packet
import Policy
import Steering
import XCTest

/// The socket datapath's rules, compiled from the source rules and the instances: a client
/// of an AID with an instance reaches its slot; a client of an AID without one reaches the
/// vacant slot (refused as "no instance"); a client of no AID has no rule ("no AID").
final class SocketDecisionsRulesTests: XCTestCase {
    func testAnAIDWithoutAnInstanceLeadsToTheVacantSlot() throws {
        let configuration = try Configuration.parse("""
            virtual-ports: 20000-20999
            ports: [9000, 9001, 5353/udp]
            applications: {acme: {}, globex: {}}
            sources:
              - {from: 198.18.1.0/24, aid: acme}
              - {from: 198.18.2.7:4000, aid: globex}
            """)
        let acme = try XCTUnwrap(AID("acme"))
        let instances = [Instance(aid: acme, initialPort: InitialPort(port: 9000, transport: .tcp), virtualPort: 20017)]
        let rules = SocketDecisions.rules(sources: configuration.sources, instances: instances, initialPorts: [9000, 9001])
        let slots = Dictionary(uniqueKeysWithValues: rules.map { ("\($0.network)/\($0.length):\($0.clientPort.map(String.init) ?? "*")>\($0.initialPort)", $0.slot) })
        XCTAssertEqual(slots, [
            "198.18.1.0/120:*>9000": SteeringSlot.base(transport: .tcp, virtualPort: 20017),
            "198.18.1.0/120:*>9001": SteeringSlot.vacant,
            "198.18.2.7/128:4000>9000": SteeringSlot.vacant,
            "198.18.2.7/128:4000>9001": SteeringSlot.vacant,
        ])
        XCTAssertEqual(SteeringSlot.vacant, 0, "virtual port 0's slot: no instance has it")
    }

    func testADrainingInstanceIsNoInstance() throws {
        let configuration = try Configuration.parse("""
            virtual-ports: 20000-20999
            ports: [9000]
            applications: {acme: {}}
            sources: [{from: 198.18.1.0/24, aid: acme}]
            """)
        let acme = try XCTUnwrap(AID("acme"))
        let draining = Instance(aid: acme, initialPort: InitialPort(port: 9000, transport: .tcp), virtualPort: 20017, accepting: false)
        let rules = SocketDecisions.rules(sources: configuration.sources, instances: [draining], initialPorts: [9000])
        XCTAssertEqual(rules.map(\.slot), [SteeringSlot.vacant])
    }
}
