import Control
import Foundation
import NetworkLab
import TestSupport
import XCTest

/// What only the socket datapath promises (docs/datapaths.md#the-socket-datapath), always run
/// with `--datapath socket` whatever the pass: steered connections leave conntrack empty and
/// show the initial port to the instance without any translation; the steering outlives a
/// killed engine and is taken over by the next; a clean stop leaves no pin behind. Real
/// `vpm exec` instances (socat), real clients, data checked by sha256.
final class SocketDatapathTests: XCTestCase {
    static let configuration = """
        virtual-ports: 20000-20999
        ports: [9000]
        applications:
          acme: {}
          globex: {}
        sources:
          - {from: 198.18.1.0/24, aid: acme}
          - {from: 198.18.2.0/24, aid: globex}
          - {from: 2001:db8:0:1::/64, aid: acme}
          - {from: 2001:db8:0:2::/64, aid: globex}
        """

    func testSteeredConnectionsAreUntrackedUntranslatedAndSurviveTheEngine() throws {
        try Privileged.requireRoot()
        let lab = try NetworkLab(name: Privileged.labName("sock"), clientAddresses: ["198.18.1.2", "198.18.2.2", "198.18.3.2"])
        defer { lab.tearDown() }
        let directory = Privileged.scratchDirectory("sock")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let vpm = try Privileged.vpmExecutable()
        let engine = try EngineRun(lab: lab, vpmExecutable: vpm, directory: directory, configuration: Self.configuration)
        engine.datapath = "socket"
        try engine.start()
        defer { _ = engine.stop() }
        do {
            // Before any instance: acme's client is refused at once, as a client of an AID
            // with no instance on the port (not as a client of no AID).
            let early = try lab.run(lab.clients[0], ["socat", "-u", "TCP:\(lab.server.address):9000,connect-timeout=5", "STDOUT"])
            XCTAssertTrue(early.standardError.contains("Connection refused"), early.standardError)
            try NetworkLab.poll("the refusal in the log, with its reason", timeout: 5) {
                engine.log.contains("last-client=198.18.1.2:") && engine.log.contains("reason=the AID has no instance on this port")
            }
            let statistics = try JSONDecoder().decode(EngineStatistics.self, from: Data(engine.stats(json: true).standardOutput.utf8))
            XCTAssertEqual(statistics.reasonsInKernel["noInstance"], 1, "\(statistics.reasonsInKernel)")
            XCTAssertNil(statistics.reasonsInKernel["noApplication"], "\(statistics.reasonsInKernel)")

            // Each instance sends its file and says which port its accepted socket is on.
            for aid in ["acme", "globex"] {
                try NetworkLab.makeRandomFile("\(directory)/\(aid).bin", count: 8 << 20)
                _ = try engine.exec(aid, ["socat", "TCP6-LISTEN:9000,ipv6only=0,reuseaddr,fork",
                                          "SYSTEM:echo $SOCAT_SOCKPORT >>\(directory)/\(aid).ports; cat \(directory)/\(aid).bin"],
                                    log: "\(aid).log")
            }
            try NetworkLab.poll("both instances to listen", timeout: 15) {
                let apps = (try? JSONDecoder().decode([AppRecord].self, from: Data(engine.apps(json: true).standardOutput.utf8))) ?? []
                return apps.count == 2 && apps.allSatisfy { app in
                    (try? lab.run(lab.server, ["ss", "-Hltn", "sport = :\(app.virtualPort)"]).standardOutput.isEmpty == false) ?? false
                }
            }
            func fetch(_ client: Int, _ family: NetworkLab.AddressFamily, _ name: String) throws -> String {
                let server = NetworkLab.endpoint(lab.server.address(family), 9000)
                try lab.checked(lab.clients[client], ["socat", "-T", "10", "-u", "TCP:\(server),connect-timeout=5",
                                                      "CREATE:\(directory)/\(name)"], timeout: 60)
                return try NetworkLab.sha256("\(directory)/\(name)")
            }
            let acme = try NetworkLab.sha256("\(directory)/acme.bin"), globex = try NetworkLab.sha256("\(directory)/globex.bin")
            for family in NetworkLab.AddressFamily.allCases {
                XCTAssertEqual(try fetch(0, family, "a.\(family)"), acme, "\(family): acme's client")
                XCTAssertEqual(try fetch(1, family, "g.\(family)"), globex, "\(family): globex's client")
                let refused = try lab.run(lab.clients[2], ["socat", "-u", "TCP:\(NetworkLab.endpoint(lab.server.address(family), 9000)),connect-timeout=5", "STDOUT"])
                XCTAssertTrue(refused.standardError.contains("Connection refused"), "\(family): a client of no AID: \(refused.standardError)")
            }
            // The instances saw the initial port on their connections: nothing was translated.
            XCTAssertEqual(try String(contentsOfFile: "\(directory)/acme.ports", encoding: .utf8), "9000\n9000\n")
            XCTAssertEqual(try String(contentsOfFile: "\(directory)/globex.ports", encoding: .utf8), "9000\n9000\n")
            // conntrack holds nothing on the initial port (vpm's NAT table is in: conntrack runs).
            let tracked = try lab.run(lab.server, ["conntrack", "-L", "-p", "tcp", "--dport", "9000"])
            XCTAssertFalse(tracked.standardOutput.contains("dport=9000"), tracked.standardOutput)
            XCTAssertTrue(try lab.checked(lab.server, ["nft", "list", "tables"]).standardOutput.contains("table inet vpm"))
            // The flows are listed, with the counters of what moved.
            let flows = try JSONDecoder().decode([FlowRecord].self, from: Data(try engine.flows(json: true).standardOutput.utf8))
            for (client, aid) in [(lab.clients[0].address, "acme"), (lab.clients[1].address, "globex")] {
                let flow = try XCTUnwrap(flows.first { $0.client == client }, "\(flows)")
                XCTAssertEqual(flow.aid, aid)
                XCTAssertEqual(flow.initialPort, 9000)
                XCTAssertGreaterThanOrEqual(flow.bytesToClient, 8 << 20)
            }

            // Killed, the engine leaves the program steering: new connections go on.
            engine.kill()
            XCTAssertEqual(try fetch(0, .ipv4, "a.nobody"), acme, "steered while no engine runs")
            XCTAssertTrue(try lab.run(lab.clients[2], ["socat", "-u", "TCP:\(lab.server.address):9000,connect-timeout=5", "STDOUT"])
                .standardError.contains("Connection refused"))
            // The next engine takes the pins over.
            try engine.start()
            XCTAssertTrue(engine.log.contains("took over the sk_lookup program and maps"), engine.log)
            XCTAssertEqual(try fetch(1, .ipv6, "g.again"), globex)
            let namespace = try lab.checked(lab.server, ["stat", "-L", "-c", "%i", "/proc/self/ns/net"]).standardOutput
                .trimmingCharacters(in: .whitespacesAndNewlines)
            XCTAssertTrue(FileManager.default.fileExists(atPath: "/sys/fs/bpf/vpm/\(namespace)/link"))

            // A clean stop removes the pins; port 9000 is the kernel's again.
            XCTAssertEqual(engine.stop(), 0)
            XCTAssertFalse(FileManager.default.fileExists(atPath: "/sys/fs/bpf/vpm/\(namespace)"), "pins left after a clean stop")
            XCTAssertTrue(try lab.run(lab.clients[0], ["socat", "-u", "TCP:\(lab.server.address):9000,connect-timeout=5", "STDOUT"])
                .standardError.contains("Connection refused"))
        } catch {
            XCTFail("engine log:\n\(engine.log)")
            throw error
        }
    }
}
