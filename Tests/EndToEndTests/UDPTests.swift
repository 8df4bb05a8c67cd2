import Control
import Foundation
import NetworkLab
import TestSupport
import XCTest

/// UDP through `vpm run`, source-routed, with real servers: two dnsmasq copies under
/// `vpm exec`, both on port 5353, each answering a TXT record with its AID; clients from
/// two networks, in each family, load them with DNS queries. And datagrams larger than the
/// path MTU, which arrive as fragments.
final class UDPTests: XCTestCase {
    typealias Family = NetworkLab.AddressFamily

    static let configuration = """
        virtual-ports: 20000-20999
        ports: [5353/udp, 5353, 7000/udp]
        applications: {acme: {}, globex: {}}
        sources:
          - {from: 198.18.1.0/24, aid: acme}
          - {from: 2001:db8:0:1::/64, aid: acme}
          - {from: 198.18.2.0/24, aid: globex}
          - {from: 2001:db8:0:2::/64, aid: globex}
        flows:
          timeouts: {udp: 4s, udp-stream: 8s}
        """
    static let clients = [("198.18.1.2", "acme"), ("198.18.2.2", "globex"), ("198.18.9.9", "")]

    private func withEngine(_ tag: String, configuration: String = configuration,
                            _ body: (NetworkLab, EngineRun, String) throws -> Void) throws {
        try Privileged.requireRoot()
        let lab = try NetworkLab(name: Privileged.labName(tag), clientAddresses: Self.clients.map(\.0))
        defer { lab.tearDown() }
        let directory = Privileged.scratchDirectory(tag)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let engine = try Privileged.engine(lab: lab, vpmExecutable: try Privileged.vpmExecutable(), directory: directory,
                                           configuration: configuration)
        try engine.start()
        defer { _ = engine.stop() }
        do { try body(lab, engine, directory) } catch {
            XCTFail("engine log:\n\(engine.log)")
            throw error
        }
    }

    private func waitForInstances(_ engine: EngineRun, count: Int) throws -> [AppRecord] {
        var apps: [AppRecord] = []
        try NetworkLab.poll("\(count) instances to register", timeout: 20) {
            apps = (try? JSONDecoder().decode([AppRecord].self, from: Data(engine.apps(json: true).standardOutput.utf8))) ?? []
            return apps.count == count
        }
        return apps
    }

    private static func statistics(_ engine: EngineRun) throws -> EngineStatistics {
        try JSONDecoder().decode(EngineStatistics.self, from: Data(try engine.stats(json: true).standardOutput.utf8))
    }

    /// 10,000 queries from each client in each family, 32 outstanding: every answer comes
    /// from the client's own AID's dnsmasq, none is lost (a retried query would be counted
    /// and the engine's drops with it), the AID-less client is refused at once (ICMP), and
    /// the flow table shows one UDP flow per client socket, until the configured UDP
    /// timeouts remove them.
    func testDNSServersOfTwoAIDsEachAnswerOnlyTheirOwnClients() throws {
        try withEngine("udp-dns") { lab, engine, directory in
            let script = try UDPServers.startDNS(engine, aids: ["acme", "globex"])
            let count = 10_000
            let group = DispatchGroup()
            let lock = NSLock()
            nonisolated(unsafe) var results: [String: Result<UDPServers.LoadResult, any Error>] = [:]
            for (index, (address, aid)) in Self.clients.enumerated() where !aid.isEmpty {
                for family in Family.allCases {
                    DispatchQueue.global().async(group: group) {
                        let result = Result {
                            try UDPServers.load(lab, lab.clients[index], script: script, server: lab.server.address(family),
                                                port: 5353, count: count)
                        }
                        lock.withLock { results["\(address) \(family)"] = result }
                    }
                }
            }
            group.wait()
            XCTAssertEqual(results.count, 4)
            var retried = 0
            for ((address, aid), family) in Self.clients.filter({ !$0.1.isEmpty }).flatMap({ c in Family.allCases.map { (c, $0) } }) {
                let result = try XCTUnwrap(results["\(address) \(family)"]).get()
                XCTAssertEqual(result.answers, [aid: count], "\(address) over \(family): answers by instance")
                XCTAssertEqual(result.unanswered, 0)
                XCTAssertEqual(result.retried, 0, "\(address) over \(family): queries retried")
                retried += result.retried
            }
            // The AID-less client: refused at once, in each family (port unreachable).
            for family in Family.allCases {
                let refused = try lab.run(lab.clients[2], ["python3", script, lab.server.address(family), "5353", "1", "connect"],
                                          timeout: 30)
                XCTAssertEqual(refused.status, 2, "\(family): \(refused.standardOutput) \(refused.standardError)")
            }
            let flows = try JSONDecoder().decode([FlowRecord].self, from: Data(engine.flows(json: true).standardOutput.utf8))
                .filter { $0.transport == "udp" && $0.initialPort == 5353 }
            for ((address, aid), family) in Self.clients.filter({ !$0.1.isEmpty }).flatMap({ c in Family.allCases.map { (c, $0) } }) {
                let client = family == .ipv4 ? address : NetworkLab.ipv6(address)
                let mine = flows.filter { $0.client == client }
                // Two sockets: the load script's warm-up query, and its load.
                XCTAssertEqual(mine.count, 2, "one flow for each of \(client)'s sockets: \(flows)")
                XCTAssertEqual(Set(mine.map(\.aid)), [aid])
                XCTAssertEqual(Set(mine.map(\.server)), [lab.server.address(family)])
                let load = try XCTUnwrap(mine.max { $0.packetsToServer < $1.packetsToServer })
                XCTAssertGreaterThanOrEqual(load.packetsToServer, UInt64(count), "\(load)")
                XCTAssertGreaterThanOrEqual(load.packetsToClient, UInt64(count), "\(load)")
            }
            try NetworkLab.poll("the refusals to be counted", timeout: 5) { (try? Self.statistics(engine))?.refused == 2 }
            let statistics = try Self.statistics(engine)
            XCTAssertEqual(statistics.reasons["noApplication"], 2, "\(statistics.reasons)")
            XCTAssertEqual(statistics.dropped, 0, "\(statistics.reasons)")
            // Idle, the flows end after the configured udp-stream timeout (8 s), on either datapath.
            let idleSince = Date()
            try NetworkLab.poll("the UDP flows to expire", timeout: 30) {
                guard let output = try? engine.flows(json: true).standardOutput,
                      let left = try? JSONDecoder().decode([FlowRecord].self, from: Data(output.utf8)) else { return false }
                return !left.contains { $0.transport == "udp" }
            }
            XCTAssertGreaterThan(Date().timeIntervalSince(idleSince), 3, "expired sooner than any UDP timeout")
            // Loss on a quiet veth is unexplained: every retry is a datagram that vanished.
            if retried > 0 {
                // Where did they go? The hosts' own counters.
                for host in [lab.server] + lab.clients {
                    let counters = ((try? lab.run(host, ["sh", "-c", "grep -h 'Udp\\|Neigh\\|Ip6InNoRoutes\\|InDiscards' /proc/net/snmp6; grep Udp: /proc/net/snmp; conntrack -S; ip -6 neigh; ip -s link"]).standardOutput) ?? "")
                    print("\(host.namespace):\n\(counters)")
                }
            }
            XCTAssertEqual(retried, 0, "queries were retried (the hosts' counters are printed above)")
        }
    }

    /// An 8 KB datagram crosses the 1500-byte veth as fragments, in each family, arrives
    /// whole at the instance of the sender's AID, and its 8 KB answer comes back the same
    /// way: acme's instance echoes the datagram (cat), globex's swaps each pair of bytes (dd
    /// conv=swab), so the answer says both that the datagram arrived whole and who answered.
    func testDatagramsLargerThanTheMTUArriveWholeAtTheRightInstance() throws {
        try withEngine("udp-frag") { lab, engine, directory in
            for (aid, filter) in [("acme", "cat"), ("globex", "dd bs=65536 count=1 conv=swab status=none")] {
                _ = try engine.exec(aid, ["socat", "-b", "65536", "UDP6-RECVFROM:7000,ipv6only=0,fork", "SYSTEM:\(filter)"],
                                    log: "\(aid)-echo.log")
            }
            let apps = try waitForInstances(engine, count: 2)
            for app in apps { try lab.waitForListener(lab.server, port: app.virtualPort, udp: true) }
            let sender = """
                import os, socket, sys
                server = sys.argv[1]
                s = socket.socket(socket.AF_INET6 if ":" in server else socket.AF_INET, socket.SOCK_DGRAM)
                s.settimeout(5)
                data = os.urandom(8192)
                s.sendto(data, (server, 7000))
                answer = s.recv(65536)
                swapped = bytes(data[i ^ 1] for i in range(len(data)))
                print("acme" if answer == data else "globex" if answer == swapped else "garbled %d" % len(answer))
                """
            try sender.write(toFile: "\(directory)/send-large.py", atomically: true, encoding: .utf8)
            // Datagrams the senders' kernels cut into fragments, by family.
            let fragmented = { (host: NetworkLab.Host) throws -> (Int, Int) in
                let v4 = try lab.checked(host, ["cat", "/proc/net/snmp"]).standardOutput
                let v6 = try lab.checked(host, ["cat", "/proc/net/snmp6"]).standardOutput
                return (Self.snmpValue(v4, "Ip:", "FragOKs"), Self.snmpValue(v6, "Ip6FragOKs"))
            }
            for (index, (_, aid)) in Self.clients.enumerated() where !aid.isEmpty {
                for family in Family.allCases {
                    let client = lab.clients[index]
                    let (clientBefore, serverBefore) = (try fragmented(client), try fragmented(lab.server))
                    let output = try lab.checked(client, ["python3", "\(directory)/send-large.py", lab.server.address(family)], timeout: 30)
                    XCTAssertEqual(output.standardOutput, "\(aid)\n", "\(client.address(family))")
                    let (clientAfter, serverAfter) = (try fragmented(client), try fragmented(lab.server))
                    let sent = family == .ipv4 ? clientAfter.0 - clientBefore.0 : clientAfter.1 - clientBefore.1
                    let answered = family == .ipv4 ? serverAfter.0 - serverBefore.0 : serverAfter.1 - serverBefore.1
                    XCTAssertEqual(sent, 1, "\(client.address(family)): the datagram was not sent as fragments")
                    XCTAssertEqual(answered, 1, "\(client.address(family)): the answer was not sent as fragments")
                }
            }
        }
    }

    /// `vpm flows` on a table many pieces long (the engine sends 4,096 slots' worth per
    /// line): 10,000 client sockets each send one datagram to acme's instance, and every
    /// one of them is listed once, as acme's, in JSON and in the table.
    func testFlowsListsATableManyPiecesLong() throws {
        let configuration = Self.configuration.replacingOccurrences(of: "udp: 4s, udp-stream: 8s", with: "udp: 300s, udp-stream: 300s")
        try withEngine("udp-many", configuration: configuration) { lab, engine, directory in
            _ = try engine.exec("acme", ["socat", "-u", "UDP4-RECV:7000", "OPEN:/dev/null"], log: "acme-sink.log")
            let app = try XCTUnwrap(waitForInstances(engine, count: 1).first)
            try lab.waitForListener(lab.server, port: app.virtualPort, udp: true)
            let (first, count) = (30_000, 10_000)
            let sender = """
                import socket, sys
                server, port, first, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
                for source in range(first, first + count):
                    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    s.bind(("", source))
                    s.sendto(b"x", (server, port))
                    s.close()
                """
            try sender.write(toFile: "\(directory)/send-many.py", atomically: true, encoding: .utf8)
            _ = try lab.checked(lab.clients[0], ["python3", "\(directory)/send-many.py", lab.server.address(.ipv4), "7000",
                                                 "\(first)", "\(count)"], timeout: 60)
            var flows: [FlowRecord] = []
            try NetworkLab.poll("\(count) flows to be listed", timeout: 30) {
                guard let output = try? engine.flows(json: true).standardOutput,
                      let listed = try? JSONDecoder().decode([FlowRecord].self, from: Data(output.utf8)) else { return false }
                flows = listed.filter { $0.initialPort == 7000 }
                return flows.count >= count
            }
            XCTAssertEqual(flows.count, count)
            XCTAssertEqual(Set(flows.map(\.clientPort)), Set((first..<first + count).map(UInt16.init)), "each socket once")
            XCTAssertEqual(Set(flows.map(\.aid)), ["acme"])
            XCTAssertEqual(Set(flows.map(\.virtualPort)), [app.virtualPort])
            XCTAssertEqual(Set(flows.map(\.client)), [Self.clients[0].0])
            let table = try engine.flows(json: false).standardOutput.split(separator: "\n")
            XCTAssertEqual(table.filter { $0.contains(":7000 ") || $0.contains(" 7000 ") }.count, count, "one table line per flow")
        }
    }

    /// A counter from /proc/net/snmp ("Ip:" header and value lines) or /proc/net/snmp6
    /// ("Name value" lines).
    static func snmpValue(_ text: String, _ prefix: String, _ name: String? = nil) -> Int {
        let lines = text.split(separator: "\n").map { $0.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init) }
        if let name {
            let rows = lines.filter { $0.first == prefix }
            guard rows.count == 2, let column = rows[0].firstIndex(of: name) else { return 0 }
            return Int(rows[1][column]) ?? 0
        }
        return lines.first { $0.first == prefix }.flatMap { Int($0.last ?? "") } ?? 0
    }
}
