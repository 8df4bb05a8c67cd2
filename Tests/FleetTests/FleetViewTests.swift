import Fleet
import Packet
import XCTest

/// The directory's keys and entries as etcd hands them over (bytes), and what the view
/// keeps of them: vetted engines, instances, and the entries it leaves out with a reason.
final class FleetViewTests: XCTestCase {
    let layout = DirectoryLayout(prefix: "/vpm")

    func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

    func engine(_ name: String, _ addresses: String, key: String = "AAAA") -> [UInt8] {
        bytes(#"{"version":1,"name":"\#(name)","addresses":[\#(addresses)],"port":9901,"virtual-ports":"22000-22999","public-key":"\#(key)"}"#)
    }

    /// Accepts engines whose addresses all lie in 198.18.0.0/16 or 2001:db8::/32, as the member's vetting does.
    let accept: (EngineEntry) -> String? = { engine in
        engine.addresses.allSatisfy { $0.hasPrefix("198.18.") || $0.hasPrefix("2001:db8:") } ? nil : "outside the network"
    }

    func testTheLayoutNamesEntriesAndNothingElse() {
        XCTAssertEqual(layout.engine("host1"), "/vpm/engines/host1")
        let instance = InstanceEntry(engine: "host1", aid: "acme", port: 9000, transport: "tcp")
        XCTAssertEqual(layout.instance(instance), "/vpm/instances/host1/acme/9000/tcp")
        XCTAssertEqual(layout.parse("/vpm/engines/host1"), .engine(name: "host1"))
        XCTAssertEqual(layout.parse("/vpm/instances/host1/acme/9000/tcp"), .instance(engine: "host1"))
        for key in ["/vpm/engines/", "/vpm/engines/a/b", "/vpmx/engines/a", "/other/engines/a", "/vpm/instances/host1/acme", "/vpm/x/y"] {
            XCTAssertNil(layout.parse(key), key)
        }
    }

    func testEnginesAndInstancesComeAndGo() {
        var view = FleetView()
        view.apply(key: "/vpm/engines/host1", value: engine("host1", #""198.18.0.3""#), layout: layout, accept: accept)
        view.apply(key: "/vpm/engines/host2", value: engine("host2", #""198.18.0.4","2001:db8::4""#), layout: layout, accept: accept)
        view.apply(key: "/vpm/instances/host1/acme/9000/tcp",
                   value: bytes(#"{"engine":"host1","aid":"acme","port":9000,"transport":"tcp"}"#), layout: layout, accept: accept)
        XCTAssertEqual(view.engine(at: IPAddress("198.18.0.3")!)?.name, "host1")
        XCTAssertEqual(view.engine(at: IPAddress("2001:db8::4")!)?.name, "host2")
        XCTAssertNil(view.engine(at: IPAddress("198.18.0.5")!))
        XCTAssertEqual(view.engines(serving: "acme", port: 9000, transport: "tcp").map(\.name), ["host1"])
        XCTAssertEqual(view.engines(serving: "acme", port: 9000, transport: "udp").map(\.name), [])
        XCTAssertEqual(view.engines(serving: "globex", port: 9000, transport: "tcp").map(\.name), [])
        // The engine's lease ends: etcd deletes its entries, and the instance serves no one.
        view.apply(key: "/vpm/engines/host1", value: nil, layout: layout, accept: accept)
        XCTAssertNil(view.engine(at: IPAddress("198.18.0.3")!))
        XCTAssertEqual(view.engines(serving: "acme", port: 9000, transport: "tcp").map(\.name), [])
        XCTAssertTrue(view.ignored.isEmpty)
    }

    func testEntriesThatDoNotFitAreLeftOutWithAReason() {
        var view = FleetView()
        let cases: [(String, [UInt8])] = [
            ("/vpm/engines/host1", bytes("{}")),                                   // does not decode
            ("/vpm/engines/host2", engine("host9", #""198.18.0.4""#)),            // another name than its key
            ("/vpm/engines/host3", engine("host3", #""10.0.0.3""#)),              // vetting refuses it
            ("/vpm/instances/host1/acme/9000/tcp",
             bytes(#"{"engine":"host1","aid":"globex","port":9000,"transport":"tcp"}"#)),  // says another AID than its key
        ]
        for (key, value) in cases { view.apply(key: key, value: value, layout: layout, accept: accept) }
        XCTAssertEqual(Set(view.ignored.keys), Set(cases.map(\.0)))
        XCTAssertEqual(view.ignored["/vpm/engines/host3"], "outside the network")
        XCTAssertTrue(view.engines.isEmpty)
        XCTAssertTrue(view.instances.isEmpty)
        // A later good value replaces the bad one, and the reason goes.
        view.apply(key: "/vpm/engines/host1", value: engine("host1", #""198.18.0.3""#), layout: layout, accept: accept)
        XCTAssertNil(view.ignored["/vpm/engines/host1"])
        XCTAssertEqual(view.engines.count, 1)
    }

    func testTwoEnginesClaimingOneAddressGetNeither() {
        var view = FleetView()
        view.apply(key: "/vpm/engines/host1", value: engine("host1", #""198.18.0.3""#), layout: layout, accept: accept)
        view.apply(key: "/vpm/engines/host2", value: engine("host2", #""198.18.0.3""#), layout: layout, accept: accept)
        XCTAssertNil(view.engine(at: IPAddress("198.18.0.3")!), "a connection to a disputed address must not go to either")
        XCTAssertEqual(view.conflicts, ["198.18.0.3": ["host1", "host2"]], "named, for the log and the refusal")
        view.apply(key: "/vpm/engines/host2", value: nil, layout: layout, accept: accept)
        XCTAssertEqual(view.conflicts, [:])
        XCTAssertEqual(view.engine(at: IPAddress("198.18.0.3")!)?.name, "host1")
    }
}
