import Control
import Foundation
import NetworkLab
import TestSupport
import XCTest

/// The source-routed story, against the real kernel and the real `vpm run`: tenants acme
/// and globex each run an instance meant for port 9000; clients from 198.18.1.0/24 belong
/// to acme, clients from 198.18.2.0/24 and 198.18.3.7 to globex, 198.18.9.9 to nobody —
/// and the same over IPv6 (the lab's twins: 2001:db8:0:1::/64 and so on). Every test runs
/// each case over both families at once.
final class SourceRoutingTests: XCTestCase {
    typealias Family = NetworkLab.AddressFamily

    static let configuration = """
        virtual-ports: 20000-20999
        ports: [9000]
        applications:
          acme:
            instances: {9000: 20017}
          globex:
            instances: {9000: 20018}
        sources:
          - {from: 198.18.1.0/24, aid: acme}
          - {from: 198.18.2.0/24, aid: globex}
          - {from: 198.18.3.7, aid: globex}
          - {from: 2001:db8:0:1::/64, aid: acme}
          - {from: 2001:db8:0:2::/64, aid: globex}
          - {from: 2001:db8:0:3::7, aid: globex}
        flows:
          timeouts: {closed: 8s, closing: 30s}
        """
    static let virtualPorts = ["acme": UInt16(20017), "globex": 20018]
    static let clients = [("198.18.1.2", "acme"), ("198.18.2.2", "globex"), ("198.18.3.7", "globex"), ("198.18.9.9", "")]
    /// An address as part of a file name: socat's addresses cannot hold colons.
    static func tag(_ address: String) -> String { address.replacingOccurrences(of: ":", with: "-") }
    /// Every client of `clients` in each family: (lab client index, address, AID).
    static let dualStackClients = clients.enumerated().flatMap { index, client in
        Family.allCases.map { (index, $0 == .ipv4 ? client.0 : NetworkLab.ipv6(client.0), client.1) }
    }

    /// Makes the lab, starts one instance per AID and the engine, runs `body`, tears down.
    /// Each instance (listening on both families) stores what a connection sends as
    /// `AID.from.CLIENT` and sends back `AID.download`, so the files show which instance
    /// served which client.
    private func withEngine(
        _ tag: String, megabytes: Int, engineArguments: [String] = [], configuration: String = SourceRoutingTests.configuration,
        setup: (NetworkLab) throws -> Void = { _ in }, _ body: (NetworkLab, EngineRun, String) throws -> Void
    ) throws {
        try Privileged.requireRoot()
        let lab = try NetworkLab(name: Privileged.labName(tag), clientAddresses: Self.clients.map(\.0))
        defer { lab.tearDown() }
        let directory = Privileged.scratchDirectory(tag)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try setup(lab)
        let engine = try Privileged.engine(lab: lab, vpmExecutable: try Privileged.vpmExecutable(), directory: directory,
                                   configuration: configuration)
        // socat writes an IPv6 peer in full, in brackets: the file takes the short form, with
        // dashes for colons (socat's addresses cannot name a file with colons).
        try """
            peer=$(python3 -c 'import ipaddress, sys; print(str(ipaddress.ip_address(sys.argv[1].strip("[]"))).replace(":", "-"))' "$SOCAT_PEERADDR")
            cat "$1/$2.download" &
            cat > "$1/$2.from.$peer"
            wait
            """.write(toFile: "\(directory)/instance.sh", atomically: true, encoding: .utf8)
        for (aid, port) in Self.virtualPorts {
            try NetworkLab.makeRandomFile("\(directory)/\(aid).download", count: megabytes << 20)
            for listen in ["TCP4-LISTEN:\(port)", "TCP6-LISTEN:\(port),ipv6only=1"] {
                _ = try lab.spawn(lab.server, ["socat", "-t", "60", "\(listen),fork,reuseaddr",
                                               "EXEC:sh \(directory)/instance.sh \(directory) \(aid)"],
                                  log: "\(directory)/\(aid).\(listen.prefix(4)).log")
            }
            try lab.waitForListener(lab.server, port: port)
        }
        try engine.start(engineArguments)
        defer { _ = engine.stop() }
        do { try body(lab, engine, directory) } catch {
            XCTFail("engine log:\n\(engine.log)")
            throw error
        }
    }

    private static func flows(_ engine: EngineRun) throws -> [FlowRecord] {
        try JSONDecoder().decode([FlowRecord].self, from: Data(try engine.flows(json: true).standardOutput.utf8))
    }

    /// Three clients at once, each over both families, 25 MB each way each connection; every
    /// byte checked with sha256, every client served by its own AID's instance only; the
    /// flow table tells the same story.
    private func userStory(
        _ tag: String, engineArguments: [String] = [], setup: (NetworkLab) throws -> Void = { _ in },
        checksums: (EngineStatistics) -> Void
    ) throws {
        let megabytes = 25
        try withEngine(tag, megabytes: megabytes, engineArguments: engineArguments, setup: setup) { lab, engine, directory in
            let served = Self.dualStackClients.filter { !$0.2.isEmpty }
            let group = DispatchGroup()
            let failures = NSLock()
            nonisolated(unsafe) var errors: [String] = []
            nonisolated(unsafe) var recorded: [String: FlowRecord] = [:]
            for (index, address, _) in served {
                let server = NetworkLab.endpoint(lab.server.address(Family(of: address)), 9000)
                try NetworkLab.makeRandomFile("\(directory)/upload.\(Self.tag(address))", count: megabytes << 20)
                DispatchQueue.global().async(group: group) {
                    do {
                        try lab.checked(lab.clients[index], [
                            "socat", "-t", "60", "OPEN:\(directory)/upload.\(Self.tag(address))!!CREATE:\(directory)/download.\(Self.tag(address))",
                            "TCP:\(server)"], timeout: 240)
                        // Both sides have closed: the flow ends `closed` (read it now: it
                        // expires 8 s later, maybe before the other clients are done).
                        try NetworkLab.poll("the flow of \(address) to close", timeout: 10) {
                            (try? Self.flows(engine))?.first { $0.client == address }?.state == "closed"
                        }
                        let flow = try Self.flows(engine).first { $0.client == address }
                        failures.withLock { recorded[address] = flow }
                    } catch {
                        failures.withLock { errors.append("\(address): \(error)") }
                    }
                }
            }
            group.wait()
            XCTAssertEqual(errors, [])

            for (_, address, aid) in served {
                let flow = try XCTUnwrap(recorded[address], "no flow recorded for \(address)")
                XCTAssertEqual(flow.aid, aid)
                XCTAssertEqual(flow.transport, "tcp")
                XCTAssertEqual(flow.mode, "source")
                XCTAssertEqual(flow.server, lab.server.address(Family(of: address)))
                XCTAssertEqual(flow.initialPort, 9000)
                XCTAssertEqual(flow.virtualPort, Self.virtualPorts[aid])
                XCTAssertGreaterThanOrEqual(flow.bytesToServer, UInt64(megabytes << 20))
                XCTAssertGreaterThanOrEqual(flow.bytesToClient, UInt64(megabytes << 20))
            }
            let table = try engine.flows()
            XCTAssertTrue(table.standardOutput.hasPrefix("PROTO"), table.standardOutput)
            XCTAssertTrue(table.standardError.contains(" flow"), table.standardError)
            for (_, address, aid) in served {
                let other = aid == "acme" ? "globex" : "acme"
                XCTAssertEqual(try NetworkLab.sha256("\(directory)/download.\(Self.tag(address))"),
                               try NetworkLab.sha256("\(directory)/\(aid).download"), "\(address) got another instance's bytes")
                try NetworkLab.poll("\(aid) to store \(address)'s upload", timeout: 30) {
                    ((try? FileManager.default.attributesOfItem(atPath: "\(directory)/\(aid).from.\(Self.tag(address))")[.size] as? Int) ?? 0)
                        >= megabytes << 20
                }
                XCTAssertEqual(try NetworkLab.sha256("\(directory)/upload.\(Self.tag(address))"),
                               try NetworkLab.sha256("\(directory)/\(aid).from.\(Self.tag(address))"), "\(address)'s upload changed")
                XCTAssertFalse(FileManager.default.fileExists(atPath: "\(directory)/\(other).from.\(Self.tag(address))"),
                               "\(address) reached \(other)'s instance")
            }

            // ... and expires after the configured 8 s.
            try NetworkLab.poll("closed flows to expire", timeout: 30) { (try? Self.flows(engine))?.isEmpty ?? false }

            let statistics = try JSONDecoder().decode(EngineStatistics.self, from: Data(try engine.stats(json: true).standardOutput.utf8))
            XCTAssertEqual(statistics.dropped, 0, "\(statistics.reasons)")
            XCTAssertEqual(statistics.flowsExpired, UInt64(served.count))
            if Privileged.decidesInKernel {
                // The kernel decided every connection from the engine's maps: nothing was
                // queued, and the flows above were learned from conntrack.
                XCTAssertEqual(statistics.packetsQueued, 0, "a source-routed client of an AID with an instance was queued")
                XCTAssertEqual(statistics.flowsDecidedInKernel, UInt64(served.count))
                XCTAssertEqual(statistics.rewritten, 0)
            } else {
                XCTAssertGreaterThan(statistics.rewritten, 0)
                checksums(statistics)
            }
        }
    }

    /// GSO on: super-packets with partial checksums, recomputed in full.
    func testTenantsReachTheirOwnInstanceWithSegmentationOffload() throws {
        try userStory("story-gso") { statistics in
            XCTAssertGreaterThan(statistics.checksumRecomputed, 0, "expected partial checksums")
        }
    }

    /// GSO and checksum offload off: complete checksums, RFC 1624 incremental updates.
    func testTenantsReachTheirOwnInstanceWithCompleteChecksums() throws {
        try userStory("story-full", engineArguments: ["--no-gso"]) { lab in
            for client in lab.clients { try lab.checked(client, ["ethtool", "-K", client.interface, "tx", "off"]) }
            try lab.checked(lab.server, ["ethtool", "-K", lab.server.interface, "tx", "off"])
            for index in lab.clients.indices { try lab.checked(lab.server, ["ethtool", "-K", "veth-s\(index)", "tx", "off"]) }
        } checksums: { statistics in
            XCTAssertGreaterThan(statistics.checksumIncremental, 0)
            XCTAssertEqual(statistics.checksumRecomputed, 0, "expected complete checksums only")
        }
    }

    /// A client whose source matches no AID is refused at once (a reset, not a timeout), in
    /// either family, and neither instance sees anything.
    func testClientWithoutApplicationIsRefusedAtOnce() throws {
        try withEngine("refuse", megabytes: 1) { lab, engine, directory in
            let unknown = lab.clients[3]
            for family in Family.allCases {
                let server = NetworkLab.endpoint(lab.server.address(family), 9000)
                let output = try lab.run(unknown, ["socat", "-u", "OPEN:/dev/null", "TCP:\(server)"], timeout: 10)
                XCTAssertNotEqual(output.status, 0)
                // A reset ("Connection refused"), not a dropped SYN ("Connection timed out").
                XCTAssertTrue(output.standardError.contains("Connection refused"), "\(family): \(output.standardError)")
            }
            let files = try FileManager.default.contentsOfDirectory(atPath: directory)
            XCTAssertFalse(files.contains { $0.contains(".from.") }, "an instance saw the refused client: \(files)")
            XCTAssertEqual(try Self.flows(engine), [])
            // The socket datapath's program refuses them itself, without the engine.
            let socket = Privileged.datapath == "socket"
            try NetworkLab.poll("the refusals to be counted", timeout: 5) {
                guard let output = try? engine.stats(json: true).standardOutput,
                      let statistics = try? JSONDecoder().decode(EngineStatistics.self, from: Data(output.utf8)) else { return false }
                return (socket ? statistics.flowsRefusedInKernel : statistics.refused) == 2
            }
            let statistics = try JSONDecoder().decode(EngineStatistics.self, from: Data(try engine.stats(json: true).standardOutput.utf8))
            XCTAssertEqual(socket ? statistics.reasonsInKernel["noApplication"] : statistics.reasons["noApplication"], 2, "\(statistics)")
            try NetworkLab.poll("the refusal to be logged", timeout: 5) { engine.log.contains("no AID matches the client") }
        }
    }

    /// Two queues, two engine threads: both queues are bound; on the userspace datapath one
    /// client's connections spread over both (by their client port, where the kernel's own
    /// `--queue-balance` would keep one address on one queue); every client still reaches its
    /// own instance, with nothing dropped. (In the userspace datapath that needs both
    /// directions of a flow on one queue; the kernel datapath queues only SYNs.)
    func testTwoQueuesServeEveryClient() throws {
        try withEngine("queues", megabytes: 2, configuration: "queues: 2\n" + Self.configuration) { lab, engine, directory in
            let queues = try lab.checked(lab.server, ["cat", "/proc/net/netfilter/nfnetlink_queue"]).standardOutput
                .split(separator: "\n").compactMap { $0.split(separator: " ").first.flatMap { Int($0) } }
            XCTAssertEqual(Set(queues), [0, 1], "both queues bound")
            let rules = try lab.ruleset(lab.server)
            XCTAssertTrue(rules.contains("-m u32 --u32 \"0x0>>0x16&0x3c@0x0>>0x11&0x1=0x0\" -j NFQUEUE --queue-num 0"), rules)
            XCTAssertTrue(rules.contains("-m u32 --u32 \"0x4>>0x8&0xff=0x6&&0x28>>0x11&0x1=0x0\" -j NFQUEUE --queue-num 0"), rules)
            XCTAssertTrue(rules.contains("-j NFQUEUE --queue-num 1"), rules)
            // The kernel datapath decides these clients in its maps and queues nothing.
            if !Privileged.decidesInKernel {
                let (index, address, aid) = Self.dualStackClients.first { !$0.2.isEmpty }!
                let server = NetworkLab.endpoint(lab.server.address(Family(of: address)), 9000)
                try NetworkLab.makeRandomFile("\(directory)/one", count: 16 << 10)
                // Client ports 41000, 41002, 41004, 41006: bit 1 is 0, 1, 0, 1.
                for connection in 0..<4 {
                    try lab.checked(lab.clients[index], ["socat", "-t", "30", "OPEN:\(directory)/one!!CREATE:\(directory)/one.\(connection)",
                                                         "TCP:\(server),sourceport=\(41000 + 2 * connection)"], timeout: 60)
                    XCTAssertEqual(try NetworkLab.sha256("\(directory)/one.\(connection)"), try NetworkLab.sha256("\(directory)/\(aid).download"))
                }
                // Columns: queue, port id, waiting, copy mode, copy range, queue dropped, user
                // dropped, the last packet id (how many the queue has carried), 1.
                let table = try lab.checked(lab.server, ["cat", "/proc/net/netfilter/nfnetlink_queue"]).standardOutput
                var carrying: [Int] = []
                for line in table.split(separator: "\n") {
                    let columns = line.split(separator: " ").compactMap { Int($0) }
                    if columns.count > 7, columns[7] > 0 { carrying.append(columns[0]) }
                }
                XCTAssertEqual(carrying.sorted(), [0, 1], "one client's 4 connections on both queues:\n\(table)")
            }
            for round in 0..<3 {
                for (index, address, aid) in Self.dualStackClients where !aid.isEmpty {
                    let server = NetworkLab.endpoint(lab.server.address(Family(of: address)), 9000)
                    let upload = "\(directory)/upload.\(Self.tag(address)).\(round)"
                    try NetworkLab.makeRandomFile(upload, count: 256 << 10)
                    try lab.checked(lab.clients[index], ["socat", "-t", "30", "OPEN:\(upload)!!CREATE:\(directory)/download.\(Self.tag(address)).\(round)",
                                                         "TCP:\(server)"], timeout: 60)
                    XCTAssertEqual(try NetworkLab.sha256("\(directory)/download.\(Self.tag(address)).\(round)"),
                                   try NetworkLab.sha256("\(directory)/\(aid).download"), "\(address) reached the wrong instance")
                }
            }
            try NetworkLab.poll("the counters", timeout: 5) {
                let output = (try? engine.stats(json: true).standardOutput) ?? ""
                guard let statistics = try? JSONDecoder().decode(EngineStatistics.self, from: Data(output.utf8)) else { return false }
                return (Privileged.decidesInKernel ? statistics.flowsDecidedInKernel : statistics.rewritten) > 0
            }
            let statistics = try JSONDecoder().decode(EngineStatistics.self, from: Data(try engine.stats(json: true).standardOutput.utf8))
            XCTAssertEqual(statistics.dropped, 0, "\(statistics.reasons)")
        }
    }

    /// UDP, in each family: each client's first datagram decides its flow, the answer comes
    /// back from the initial port, each client hears only its own AID's instance, and a
    /// client without an AID gets ICMP port unreachable at once.
    func testUDPClientsReachTheirOwnInstance() throws {
        let configuration = Self.configuration
            .replacingOccurrences(of: "ports: [9000]", with: "ports: [9000, 5353/udp]")
            .replacingOccurrences(of: "{9000: 20017}", with: "{9000: 20017, 5353/udp: 20117}")
            .replacingOccurrences(of: "{9000: 20018}", with: "{9000: 20018, 5353/udp: 20118}")
        try withEngine("udp", megabytes: 1, configuration: configuration) { lab, engine, directory in
            for (aid, port) in [("acme", 20117), ("globex", 20118)] {
                // Answers a second late, so the client's later datagrams meet a flow without replies.
                for listen in ["UDP4-RECVFROM:\(port)", "UDP6-RECVFROM:\(port),ipv6only=1"] {
                    _ = try lab.spawn(lab.server, ["socat", "-t", "3", "\(listen),fork", "SYSTEM:sleep 1; echo \(aid)-answers"],
                                      log: "\(directory)/\(aid)-\(listen.prefix(4)).log")
                }
            }
            try NetworkLab.poll("the UDP instances", timeout: 10) {
                let sockets = (try? lab.checked(lab.server, ["ss", "-uln"]).standardOutput) ?? ""
                return sockets.components(separatedBy: ":20117").count == 3 && sockets.components(separatedBy: ":20118").count == 3
            }
            // Three datagrams from one socket before any answer: one flow, decided once (the
            // first datagram's decision is in conntrack before the others leave).
            let client = """
                import socket, sys, time
                s = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5)
                s.sendto(b"hello", (sys.argv[1], 5353)); time.sleep(0.3)
                for n in range(2): s.sendto(b"hello", (sys.argv[1], 5353))
                print(" ".join(sorted(s.recv(100).decode().strip() for n in range(3))))
                """
            try client.write(toFile: "\(directory)/udp-client.py", atomically: true, encoding: .utf8)
            let served = Self.dualStackClients.filter { !$0.2.isEmpty }
            for (index, address, aid) in served {
                let server = lab.server.address(Family(of: address))
                let output = try lab.checked(lab.clients[index], ["python3", "\(directory)/udp-client.py", server], timeout: 20)
                XCTAssertEqual(output.standardOutput, Array(repeating: "\(aid)-answers", count: 3).joined(separator: " ") + "\n",
                               "\(address) heard another instance")
            }
            for family in Family.allCases {
                let server = NetworkLab.endpoint(lab.server.address(family), 5353)
                let refused = try lab.run(lab.clients[3], ["sh", "-c", "echo hello | socat -t 3 - UDP:\(server)"], timeout: 20)
                XCTAssertNotEqual(refused.status, 0)
                XCTAssertTrue(refused.standardError.contains("Connection refused"), "\(family): \(refused.standardError)")
            }
            let flows = try Self.flows(engine).filter { $0.transport == "udp" }
            XCTAssertEqual(Set(flows.map(\.client)), Set(served.map(\.1)))
            for flow in flows {
                let aid = served.first { $0.1 == flow.client }?.2
                XCTAssertEqual(flow.aid, aid)
                XCTAssertEqual(flow.initialPort, 5353)
                XCTAssertEqual(flow.virtualPort, aid == "acme" ? 20117 : 20118)
                XCTAssertEqual(flow.state, "udpStream", "the answer was seen")
                XCTAssertGreaterThanOrEqual(flow.packetsToClient, 3)
                XCTAssertGreaterThanOrEqual(flow.packetsToServer, 3)
            }
            if Privileged.decidesInKernel {
                // Only the refused clients' datagrams were queued: the kernel decided the
                // served flows from the engine's maps, and kernel NAT carried them.
                let statistics = { () -> EngineStatistics? in
                    let output = (try? engine.stats(json: true).standardOutput) ?? ""
                    return try? JSONDecoder().decode(EngineStatistics.self, from: Data(output.utf8))
                }
                let expected = UInt64(Family.allCases.count)
                try NetworkLab.poll("the counters to be published", timeout: 5) { (statistics()?.packetsQueued ?? 0) >= expected }
                usleep(500_000)  // counters are published every 200 ms
                XCTAssertEqual(statistics()?.packetsQueued, expected, "the kernel datapath queued a flow the kernel could decide")
                XCTAssertEqual(statistics()?.flowsDecidedInKernel, UInt64(served.count))
            }
        }
    }

    /// Dialing a virtual port directly, bypassing the initial port, gets nowhere, in either
    /// family.
    func testDirectConnectionToVirtualPortFails() throws {
        try withEngine("direct", megabytes: 1) { lab, engine, directory in
            for family in Family.allCases {
                let output = try lab.run(lab.client, ["socat", "-u", "OPEN:/dev/null",
                                                      "TCP:\(NetworkLab.endpoint(lab.server.address(family), 20017)),connect-timeout=2"],
                                         timeout: 10)
                XCTAssertNotEqual(output.status, 0, "a direct \(family) connection to the virtual port succeeded")
            }
            let files = try FileManager.default.contentsOfDirectory(atPath: directory)
            XCTAssertFalse(files.contains { $0.contains(".from.") }, "an instance was reached directly: \(files)")
            XCTAssertEqual(try Self.flows(engine), [])
        }
    }

    /// An operator's own rules exist before the engine starts; after it stops, the ruleset
    /// is exactly what it was.
    func testStopRestoresTheRulesetExactly() throws {
        try Privileged.requireRoot()
        let lab = try NetworkLab(name: Privileged.labName("rules"))
        defer { lab.tearDown() }
        let directory = Privileged.scratchDirectory("rules")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        for tool in ["iptables", "ip6tables"] {
            try lab.checked(lab.server, [tool, "-w", "-t", "mangle", "-A", "PREROUTING", "-p", "tcp", "--dport", "22", "-j", "ACCEPT"])
            try lab.checked(lab.server, [tool, "-w", "-t", "nat", "-A", "PREROUTING", "-p", "tcp", "--dport", "2222", "-j", "REDIRECT", "--to-ports", "22"])
            try lab.checked(lab.server, [tool, "-w", "-t", "filter", "-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT"])
            try lab.checked(lab.server, [tool, "-w", "-t", "raw", "-A", "PREROUTING", "-p", "udp", "--dport", "53", "-j", "CT", "--notrack"])
            try lab.checked(lab.server, [tool, "-w", "-t", "raw", "-A", "OUTPUT", "-p", "udp", "--sport", "53", "-j", "CT", "--notrack"])
        }
        let ruleset = { try lab.ruleset(lab.server) }
        let before = try ruleset()
        let engine = try Privileged.engine(lab: lab, vpmExecutable: try Privileged.vpmExecutable(), directory: directory,
                                   configuration: Self.configuration)
        try engine.start()
        let during = try ruleset()
        if Privileged.decidesInKernel {
            XCTAssertTrue(during.contains("-A VPM-PREROUTING ! -i lo -p tcp -m tcp --dport 9000 --tcp-flags FIN,SYN,RST,ACK SYN -m conntrack --ctstate NEW -m mark ! --mark 0x50000000/0xf0000000 -m mark ! --mark 0x76706d01 "), during)
            XCTAssertTrue(during.contains("table inet vpm"), during)
        } else {
            XCTAssertTrue(during.contains("-A VPM-PREROUTING ! -i lo -p tcp -m tcp --dport 9000 -j NFQUEUE --queue-num 0")
                          || during.contains("-A VPM-PREROUTING ! -i lo -p tcp -m tcp --dport 9000 -m u32 "), during)
            XCTAssertTrue(during.contains("-A VPM-INPUT"), during)
        }
        XCTAssertEqual(engine.stop(), 0, "the engine should exit 0 on SIGTERM:\n\(engine.log)")
        XCTAssertEqual(try ruleset(), before)
        XCTAssertFalse(FileManager.default.fileExists(atPath: engine.socketPath), "control socket left behind")
    }
}
