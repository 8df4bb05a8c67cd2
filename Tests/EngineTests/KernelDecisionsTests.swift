import Decision
@testable import Engine
import FlowTable
import Packet
import Policy
import XCTest

/// The source-routed decisions the kernel datapath hands to nft, without a kernel: which
/// elements the maps get for source rules and instances, the script that moves them, and
/// the ports withheld from new instances meanwhile.
final class KernelDecisionsTests: XCTestCase {
    static let configuration = """
        virtual-ports: 20000-20999
        ports: [9000, 5353/udp]
        applications:
          acme: {instances: {9000: 20017, 5353/udp: 20020}}
          globex: {instances: {9000: 20018}}
          initech: {}
        sources:
          - {from: 198.18.1.0/24, aid: acme}
          - {from: 198.18.3.7, aid: globex}
          - {from: "198.18.4.1:5555", aid: globex}
          - {from: "2001:db8:1::/48", aid: acme}
          - {from: "[2001:db8::9]:7000", aid: initech}
        """

    func elements(_ configuration: Configuration, _ instances: [Instance]) -> [String] {
        KernelDecisions.elements(sources: configuration.sources, instances: instances, slots: PacketDecider.slots(configuration))
            .sorted().map { "\($0.map) \($0.key) : 0x\(String($0.mark, radix: 16))" }
    }

    func testOneElementPerRuleAndInstanceOfItsAID() throws {
        let configuration = try Configuration.parse(Self.configuration)
        let acme = KernelMark(mode: .source, slot: 1, virtualPort: 20017).value
        let acmeUDP = KernelMark(mode: .source, slot: 1, virtualPort: 20020).value
        let globex = KernelMark(mode: .source, slot: 2, virtualPort: 20018).value
        let hex = { (mark: UInt32) in "0x" + String(mark, radix: 16) }
        XCTAssertEqual(elements(configuration, configuration.instances), [
            "endpoints4 tcp . 198.18.4.1 . 5555 . 9000 : \(hex(globex))",
            "hosts4 tcp . 198.18.3.7 . 9000 : \(hex(globex))",
            "networks4 tcp . 198.18.1.0/24 . 9000 : \(hex(acme))",
            "networks4 udp . 198.18.1.0/24 . 5353 : \(hex(acmeUDP))",
            "networks6 tcp . 2001:db8:1::/48 . 9000 : \(hex(acme))",
            "networks6 udp . 2001:db8:1::/48 . 5353 : \(hex(acmeUDP))",
        ], "initech has no instance: its clients are left to the engine, which refuses them")
    }

    func testDrainingInstancesGetNone() throws {
        let configuration = try Configuration.parse(Self.configuration)
        var instances = configuration.instances.filter { $0.aid == "globex" }
        instances[0].accepting = false
        XCTAssertEqual(elements(configuration, instances), [], "a draining instance takes no new connections")
        instances.append(Instance(aid: "initech", initialPort: InitialPort(port: 5353, transport: .udp), virtualPort: 20030))
        let initech = "0x" + String(KernelMark(mode: .source, slot: 3, virtualPort: 20030).value, radix: 16)
        XCTAssertEqual(elements(configuration, instances), ["endpoints6 udp . 2001:db8::9 . 7000 . 5353 : \(initech)"],
                       "a rule with a client port covers that port, on every initial port of its AID's instances")
    }

    func testPrefixesCoveringTheIPv4MappedBlockCoverIPv4Clients() throws {
        func parts(_ text: String) -> [String] {
            SourceMatch(text)!.familyParts.map { "\($0.isIPv4 ? "ip" : "ip6") \($0.network)\($0.port.map { " :\($0)" } ?? "")" }
        }
        XCTAssertEqual(parts("::/0"), ["ip 0.0.0.0/0", "ip6 ::/0"])
        XCTAssertEqual(parts("::ffff:0:0/96"), ["ip 0.0.0.0/0"])
        XCTAssertEqual(parts("0.0.0.0/0"), ["ip 0.0.0.0/0"])
        XCTAssertEqual(parts("198.18.0.0/15"), ["ip 198.18.0.0/15"])
        XCTAssertEqual(parts("2001:db8::/32"), ["ip6 2001:db8::/32"])
        XCTAssertEqual(parts("198.18.4.1:5555"), ["ip 198.18.4.1 :5555"])
        XCTAssertEqual(parts("2001:db8::1"), ["ip6 2001:db8::1"])
        XCTAssertEqual(parts("::ffff:0:0/100"), ["ip 0.0.0.0/4"], "an IPv6-written prefix inside the IPv4-mapped block")
    }

    func testScriptMovesOnlyWhatChangedAndRewritesWhenUnsure() throws {
        let configuration = try Configuration.parse(Self.configuration)
        let slots = PacketDecider.slots(configuration)
        let before = KernelDecisions.elements(sources: configuration.sources, instances: configuration.instances, slots: slots)
        var moved = configuration.instances
        moved[2].virtualPort = 20019  // globex's instance on another port
        let after = KernelDecisions.elements(sources: configuration.sources, instances: moved, slots: slots)
        let script = KernelDecisions.script(from: before, to: after)
        XCTAssertEqual(script, """
            delete element inet vpm hosts4 { tcp . 198.18.3.7 . 9000 }
            add element inet vpm hosts4 { tcp . 198.18.3.7 . 9000 : 0x50024e33 }
            delete element inet vpm endpoints4 { tcp . 198.18.4.1 . 5555 . 9000 }
            add element inet vpm endpoints4 { tcp . 198.18.4.1 . 5555 . 9000 : 0x50024e33 }

            """)
        XCTAssertEqual(KernelDecisions.script(from: after, to: after), "", "nothing changed: nft is not run")
        let whole = KernelDecisions.script(from: nil, to: after)
        let flushes = ["hosts4", "endpoints4", "networks4", "hosts6", "endpoints6", "networks6"].map { "flush map inet vpm \($0)\n" }.joined()
        XCTAssertTrue(whole.hasPrefix(flushes), whole)
        XCTAssertEqual(whole.components(separatedBy: " : 0x").count - 1, after.count)
        XCTAssertEqual(KernelDecisions.script(from: nil, to: []), flushes)
    }

    func testLargeMapsAreWrittenInSlices() throws {
        let sources = (0..<1200).map { SourceRule(match: SourceMatch("198.18.\($0 / 256).\($0 % 256)")!, aid: "acme") }
        let instances = [Instance(aid: "acme", initialPort: InitialPort(port: 9000, transport: .tcp), virtualPort: 20017)]
        let elements = KernelDecisions.elements(sources: sources, instances: instances, slots: ["acme": 1])
        let lines = KernelDecisions.script(from: [], to: elements).split(separator: "\n")
        XCTAssertEqual(lines.count, 3, "512 elements a line")
        XCTAssertEqual(lines.map { $0.components(separatedBy: " : 0x").count - 1 }, [512, 512, 176])
    }

    /// Networks beyond the interval map's limit are left to the engine; single addresses,
    /// in hash maps, are not limited.
    func testNetworksBeyondTheLimitAreLeftToTheEngine() {
        let instances = [Instance(aid: "acme", initialPort: InitialPort(port: 9000, transport: .tcp), virtualPort: 20017)]
        let networks = (0..<(KernelDecisions.networkLimit + 10)).map { SourceRule(match: SourceMatch("10.\($0 / 256).\($0 % 256).0/24")!, aid: "acme") }
        let hosts = (0..<20_000).map { SourceRule(match: SourceMatch("198.19.\($0 / 256).\($0 % 256)")!, aid: "acme") }
        let (kept, left) = KernelDecisions.capped(KernelDecisions.elements(sources: networks + hosts, instances: instances, slots: ["acme": 1]))
        XCTAssertEqual(left, 10)
        XCTAssertEqual(kept.filter { $0.map == "networks4" }.count, KernelDecisions.networkLimit)
        XCTAssertEqual(kept.filter { $0.map == "hosts4" }.count, 20_000)
        XCTAssertEqual(KernelDecisions.capped(kept).left, 0, "the choice is stable")
    }

    /// A port the maps may still name is never handed to another AID's new instance.
    func testWithheldPortsAreNotAllocated() throws {
        let configuration = try Configuration.parse("""
            virtual-ports: 20000-20002
            ports: [9000]
            applications: {acme: {}, globex: {}}
            """)
        let registry = InstanceRegistry(configuration: configuration, statePath: nil)
        registry.withhold([InstanceRegistry.PortKey(transport: .tcp, port: 20000), InstanceRegistry.PortKey(transport: .udp, port: 20001)])
        XCTAssertEqual(registry.bind(aid: "acme", initialPort: 9000, transport: .tcp, pid: 1, now: { 1 }), .allocated(20001),
                       "20000 is withheld for tcp; a udp port of the same number is not")
        XCTAssertEqual(registry.bind(aid: "globex", initialPort: 9000, transport: .tcp, pid: 2, now: { 1 }), .allocated(20002))
        registry.withhold([])
        XCTAssertEqual(registry.bind(aid: "acme", initialPort: 9000, transport: .tcp, pid: 3, now: { 1 }), .allocated(20001),
                       "an instance keeps its port")
    }
}
