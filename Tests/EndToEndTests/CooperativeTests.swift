import Control
import Foundation
import NetworkLab
import TestSupport
import XCTest

/// Cooperative mode with two real engines, one per host: the client host's engine holds a
/// program's SYN, negotiates with the server host's engine, and the wire carries the
/// virtual port while both programs only ever see 9000. Local mode on one host. The engines
/// negotiate over either family; the main cases run over both.
final class CooperativeTests: XCTestCase {
    typealias Family = NetworkLab.AddressFamily

    static let key = (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
    static let applications = "applications: {acme: {}, globex: {}, initech: {}}\nflows: {timeouts: {closed: 2m}}"

    static let serverConfiguration = """
        virtual-ports: 20000-20999
        ports: [9000, 5353/udp, 5353]
        \(applications)
        cooperative:
          listen: [198.18.0.1:9901, "[2001:db8::1]:9901"]
          peers:
            - {network: 198.18.0.2, key: \(key)}
            - {network: 2001:db8::2, key: \(key)}
        """
    static let clientConfiguration = """
        virtual-ports: 21000-21999
        ports: [9000, 5353/udp, 5353]
        \(applications)
        cooperative:
          timeout: 3s   # generous: CI machines are loaded; a NAK or a closed port answers at once anyway
          peers:
            - {network: 198.18.0.1, key: \(key), virtual-ports: 20000-20999}
            - {network: 2001:db8::1, key: \(key), virtual-ports: 20000-20999}
        """

    struct Hosts {
        var lab: NetworkLab
        var server: EngineRun
        var client: EngineRun
        var directory: String
    }

    private func withEngines(_ tag: String, _ body: (Hosts) throws -> Void) throws {
        try Privileged.requireRoot()
        let lab = try NetworkLab(name: Privileged.labName(tag))
        defer { lab.tearDown() }
        let directory = Privileged.scratchDirectory(tag)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let vpm = try Privileged.vpmExecutable()
        let server = try Privileged.engine(lab: lab, vpmExecutable: vpm, directory: "\(directory)/server",
                                   configuration: Self.serverConfiguration, host: lab.server)
        let client = try Privileged.engine(lab: lab, vpmExecutable: vpm, directory: "\(directory)/client",
                                   configuration: Self.clientConfiguration, host: lab.client)
        try server.start(["--log-level", "debug"])
        defer { _ = server.stop() }
        try client.start(["--log-level", "debug"])
        defer { _ = client.stop() }
        try """
            cat "$1/$2.download" &
            cat > "$1/$2.from.$SOCAT_PEERPORT"
            wait
            """.write(toFile: "\(directory)/instance.sh", atomically: true, encoding: .utf8)
        do { try body(Hosts(lab: lab, server: server, client: client, directory: directory)) } catch {
            XCTFail("server engine log:\n\(server.log)\nclient engine log:\n\(client.log)")
            throw error
        }
    }

    /// An instance of `aid` on the server host that stores what arrives and sends back
    /// AID.download; one socket for both families.
    private func startInstance(_ hosts: Hosts, aid: String, megabytes: Int) throws -> UInt16 {
        try NetworkLab.makeRandomFile("\(hosts.directory)/\(aid).download", count: megabytes << 20)
        _ = try hosts.server.exec(aid, ["socat", "-t", "60", "TCP6-LISTEN:9000,ipv6only=0,reuseaddr,fork",
                                        "EXEC:sh \(hosts.directory)/instance.sh \(hosts.directory) \(aid)"], log: "\(aid).log")
        var port: UInt16 = 0
        try NetworkLab.poll("\(aid) to register on the server", timeout: 10) {
            let apps = (try? JSONDecoder().decode([AppRecord].self, from: Data(hosts.server.apps(json: true).standardOutput.utf8))) ?? []
            port = apps.first { $0.aid == aid }?.virtualPort ?? 0
            return port != 0
        }
        try hosts.lab.waitForListener(hosts.lab.server, port: port)
        return port
    }

    private func flows(_ engine: EngineRun) throws -> [FlowRecord] {
        try JSONDecoder().decode([FlowRecord].self, from: Data(try engine.flows(json: true).standardOutput.utf8))
    }

    private func statistics(_ engine: EngineRun) throws -> EngineStatistics {
        try JSONDecoder().decode(EngineStatistics.self, from: Data(try engine.stats(json: true).standardOutput.utf8))
    }

    /// Each AID over each family at once, 20 MB each way each: every byte where it belongs.
    func testEachAIDReachesItsOwnInstanceAndTheWireCarriesTheVirtualPort() throws {
        try withEngines("coop") { hosts in
            let lab = hosts.lab, directory = hosts.directory
            let megabytes = 20
            let ports = ["acme": try startInstance(hosts, aid: "acme", megabytes: megabytes),
                         "globex": try startInstance(hosts, aid: "globex", megabytes: megabytes)]
            // Connection set-ups on the wire (SYN and SYN-ACK, either family): which ports did
            // they carry? (tcpdump's tcp[] reaches IPv4 only: IPv6's flags are at 40 + 13.)
            let capture = try lab.spawn(lab.client, ["tcpdump", "-i", lab.client.interface, "-nn", "-l",
                                                     "(tcp[tcpflags] & tcp-syn != 0 or (ip6 and ip6[6] == 6 and ip6[53] & 2 != 0)) and not port 9901"],
                                        log: "\(directory)/wire.txt")
            sleep(1)
            let group = DispatchGroup()
            let lock = NSLock()
            nonisolated(unsafe) var failures: [String] = []
            let cases = ["acme", "globex"].flatMap { aid in Family.allCases.map { (aid, $0) } }
            for (aid, family) in cases {
                try NetworkLab.makeRandomFile("\(directory)/upload.\(aid).\(family)", count: megabytes << 20)
            }
            for (aid, family) in cases {
                DispatchQueue.global().async(group: group) {
                    do {
                        let output = try hosts.client.execAndWait(aid, [
                            "socat", "-t", "60", "OPEN:\(directory)/upload.\(aid).\(family)!!CREATE:\(directory)/download.\(aid).\(family)",
                            "TCP:\(NetworkLab.endpoint(lab.server.address(family), 9000)),sourceport=\(Self.sourcePort(aid, family))"],
                            timeout: 240)
                        if output.status != 0 { lock.withLock { failures.append("\(aid) \(family): \(output.standardError)") } }
                    } catch {
                        lock.withLock { failures.append("\(aid) \(family): \(error)") }
                    }
                }
            }
            group.wait()
            XCTAssertEqual(failures, [])

            for (aid, family) in cases {
                XCTAssertEqual(try NetworkLab.sha256("\(directory)/download.\(aid).\(family)"),
                               try NetworkLab.sha256("\(directory)/\(aid).download"), "\(aid) over \(family)")
                // The instance names what it stores by the client's port, which says who sent it.
                let stored = "\(directory)/\(aid).from.\(Self.sourcePort(aid, family))"
                try NetworkLab.poll("\(aid)'s \(family) upload to be stored", timeout: 30) {
                    ((try? FileManager.default.attributesOfItem(atPath: stored)[.size] as? Int) ?? 0) >= megabytes << 20
                }
                XCTAssertEqual(try NetworkLab.sha256("\(directory)/upload.\(aid).\(family)"), try NetworkLab.sha256(stored))
            }
            let stored = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.contains(".from.") }
            XCTAssertEqual(Set(stored), Set(cases.map { "\($0.0).from.\(Self.sourcePort($0.0, $0.1))" }),
                           "each instance should have served exactly its own AID's clients")

            // The client program's own view of its connection: getpeername() says port 9000.
            for family in Family.allCases {
                let peer = try hosts.client.execAndWait("acme", ["python3", "-c", """
                    import socket
                    s = socket.create_connection(("\(lab.server.address(family))", 9000), timeout=5)
                    print(s.getpeername()[1], len(s.recv(1)))
                    """])
                XCTAssertEqual(peer.standardOutput, "9000 1\n", "\(family): \(peer.standardError)")
            }

            lab.stop(capture, grace: 2)
            let wire = (try? String(contentsOfFile: "\(directory)/wire.txt", encoding: .utf8)) ?? ""
            for family in Family.allCases {
                let server = lab.server.address(family)
                XCTAssertTrue(wire.contains("\(server).\(ports["acme"]!)"), "the wire should carry acme's virtual port:\n\(wire.prefix(2000))")
                XCTAssertTrue(wire.contains("\(server).\(ports["globex"]!)"), "the wire should carry globex's virtual port")
                XCTAssertFalse(wire.contains("\(server).9000"), "port 9000 appeared on the wire")
            }

            let clientFlows = try flows(hosts.client), serverFlows = try flows(hosts.server)
            for (aid, family) in cases {
                let port = Self.sourcePort(aid, family)
                let mine = try XCTUnwrap(clientFlows.first { $0.clientPort == port }, "client engine has no \(aid) \(family) flow")
                XCTAssertEqual(mine.aid, aid)
                XCTAssertEqual(mine.mode, "cooperative")
                XCTAssertEqual(mine.virtualPort, ports[aid])
                XCTAssertEqual(mine.peer, NetworkLab.endpoint(lab.server.address(family), 9901))
                let theirs = try XCTUnwrap(serverFlows.first { $0.clientPort == port }, "server engine has no \(aid) \(family) flow")
                XCTAssertEqual(theirs.aid, aid)
                XCTAssertEqual(theirs.mode, "cooperative")
                XCTAssertEqual(theirs.peer, lab.client.address(family))
            }
        }
    }

    /// The client ports of the main test's connections: they name what each instance stored.
    private static func sourcePort(_ aid: String, _ family: Family) -> UInt16 {
        (aid == "acme" ? 41000 : 42000) + (family == .ipv4 ? 4 : 6)
    }

    /// UDP, negotiated: dnsmasq copies of acme and globex on the server host, and programs
    /// under `vpm exec` on the client host querying them over each family, 32 queries at a
    /// time, from a connected socket and from unconnected ones (sendto, sendmsg): every answer from
    /// the program's own AID, none lost (the datagrams sent while the flow is negotiated
    /// wait behind the first).
    func testUDPProgramsReachTheirOwnAIDsInstanceOverEachFamily() throws {
        try withEngines("coop-udp") { hosts in
            let lab = hosts.lab
            let script = try UDPServers.startDNS(hosts.server, aids: ["acme", "globex"])
            let count = 2_000
            for aid in ["acme", "globex"] {
                for family in Family.allCases {
                    for way in ["connect", "sendto", "sendmsg"] {
                        let how = "\(aid) over \(family), \(way)"
                        let output = try hosts.client.execAndWait(aid, ["python3", script, lab.server.address(family), "5353", "\(count)",
                                                                        way], timeout: 150)
                        XCTAssertEqual(output.status, 0, "\(how): \(output.standardOutput) \(output.standardError)")
                        guard output.status == 0 else { continue }
                        let result = try JSONDecoder().decode(UDPServers.LoadResult.self, from: Data(output.standardOutput.utf8))
                        XCTAssertEqual(result.answers, [aid: count], how)
                        XCTAssertEqual(result.retried, 0, how)
                    }
                }
            }
            // A program whose AID has no instance: refused at once.
            for family in Family.allCases {
                let refused = try hosts.client.execAndWait("initech", ["python3", script, lab.server.address(family), "5353", "1", "connect"])
                XCTAssertEqual(refused.status, 2, "\(family): \(refused.standardOutput) \(refused.standardError)")
            }
            let flows = try flows(hosts.client).filter { $0.transport == "udp" }
            XCTAssertTrue(flows.allSatisfy { $0.mode == "cooperative" }, "\(flows)")
            XCTAssertEqual(Set(flows.map(\.aid)), ["acme", "globex"], "\(flows)")
        }
    }

    func testAIDWithoutInstanceIsRefusedAtOnce() throws {
        try withEngines("coop-nak") { hosts in
            _ = try startInstance(hosts, aid: "acme", megabytes: 1)
            for family in Family.allCases {
                let server = NetworkLab.endpoint(hosts.lab.server.address(family), 9000)
                let output = try hosts.client.execAndWait("initech", ["socat", "-u", "OPEN:/dev/null", "TCP:\(server)"])
                XCTAssertNotEqual(output.status, 0)
                // A reset ("Connection refused"), not a dropped SYN ("Connection timed out").
                XCTAssertTrue(output.standardError.contains("Connection refused"), "\(family): \(output.standardError)")
            }
            XCTAssertFalse(try FileManager.default.contentsOfDirectory(atPath: hosts.directory).contains { $0.contains(".from.") })
            // Refused on the peer's NAK (its reason is in the client engine's log), not on the
            // negotiation timeout ("no answer ... within").
            try NetworkLab.poll("the refusal to be logged", timeout: 5) { hosts.client.log.contains("no instance of AID 'initech'") }
            XCTAssertFalse(hosts.client.log.contains("no answer from negotiation peer"), hosts.client.log)
            XCTAssertEqual(try statistics(hosts.server).negotiations["refused"], 2, "the server engine sent a NAK each time")
            try NetworkLab.poll("the refusals to be counted", timeout: 5) { (try? statistics(hosts.client))?.refused == 2 }
            let client = try statistics(hosts.client)
            XCTAssertEqual(client.reasons["negotiationRefused"], 2, "\(client.reasons)")
        }
    }

    /// A second implementation of the message format (docs/negotiation.md), in Python, run
    /// from the client host: `KEY checks` sends a good request, it again, a forged and a
    /// truncated one; `KEY save FILE` sends a good one and keeps it; `KEY resend FILE` sends
    /// the kept one again.
    static let negotiateScript = """
        import base64, hashlib, hmac, json, os, socket, sys, time
        def line(key, **fields):
            body = dict(version=1, type="negotiate", nonce=os.urandom(16).hex(), timestamp=int(time.time()*1000),
                        aid="acme", client="198.18.0.2", clientPort=40000, server="198.18.0.1", initialPort=9000, transport="tcp")
            body.update(fields)
            head = b"VPM1 " + base64.b64encode(json.dumps(body).encode())
            return head + b" " + hmac.new(key, head, hashlib.sha256).hexdigest().encode() + b"\\n"
        def send(data):
            s = socket.create_connection(("198.18.0.1", 9901), timeout=3)
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            answer = s.recv(4096)
            s.close()
            return answer
        key, mode = bytes.fromhex(sys.argv[1]), sys.argv[2]
        if mode == "checks":
            good = line(key)
            print("good", b"VPM1" in send(good))
            print("replayed", b"VPM1" in send(good))
            print("forged", b"VPM1" in send(line(os.urandom(32))))
            print("truncated", b"VPM1" in send(line(key)[:40]))
        elif mode == "save":
            good = line(key)
            open(sys.argv[3], "wb").write(good)
            print("good", b"VPM1" in send(good))
        else:
            print("replayed", b"VPM1" in send(open(sys.argv[3], "rb").read()))
        """

    /// The server engine restarts (its nonce cache is new) and a request it accepted before,
    /// replayed within the 30-second stale window, is refused as replayed; real clients are
    /// served as before.
    func testARequestReplayedAfterTheServerEngineRestartsIsRefused() throws {
        try withEngines("coop-replay") { hosts in
            _ = try startInstance(hosts, aid: "acme", megabytes: 1)
            try Self.negotiateScript.write(toFile: "\(hosts.directory)/negotiate.py", atomically: true, encoding: .utf8)
            let kept = "\(hosts.directory)/request.line"
            let first = try hosts.lab.checked(hosts.lab.client, ["python3", "\(hosts.directory)/negotiate.py", Self.key, "save", kept])
            XCTAssertEqual(first.standardOutput, "good True\n")
            XCTAssertEqual(hosts.server.stop(), 0)
            try hosts.server.start(["--log-level", "debug"])
            let again = try hosts.lab.checked(hosts.lab.client, ["python3", "\(hosts.directory)/negotiate.py", Self.key, "resend", kept])
            XCTAssertEqual(again.standardOutput, "replayed False\n")
            let statistics = try statistics(hosts.server)
            XCTAssertEqual(statistics.negotiations["replayed"], 1, "refused as a replay, not as stale: \(statistics.negotiations)")
            XCTAssertEqual(statistics.negotiations["accepted"], 0)
            XCTAssertTrue(try flows(hosts.server).isEmpty, "the replay recorded no flow")
            // A real client's negotiation, made after the restart, is served.
            _ = try startInstance(hosts, aid: "acme", megabytes: 1)
            let served = try hosts.client.execAndWait("acme", ["socat", "-u", "OPEN:/dev/null", "TCP:\(hosts.lab.server.address):9000"])
            XCTAssertEqual(served.status, 0, served.standardError)
        }
    }

    /// Both engines restart, one after the other, while a program under `vpm exec` on the
    /// client host uploads to acme's instance over IPv6 (the engines negotiate over IPv6
    /// too): the server's engine is killed (SIGKILL), the client's stopped (SIGTERM) with
    /// `--keep-connections`. The upload completes whole.
    /// Kernel datapath: conntrack carries the connection meanwhile; userspace: each engine
    /// restores its side's negotiated flow from its snapshot.
    func testBothEnginesRestartMidTransfer() throws {
        try withEngines("coop-restart") { hosts in
            let directory = hosts.directory
            let keeping = ["--log-level", "debug", "--keep-connections"]
            XCTAssertEqual(hosts.client.stop(), 0)
            try hosts.client.start(keeping)
            _ = try startInstance(hosts, aid: "acme", megabytes: 1)
            let upload = "\(directory)/upload"
            try NetworkLab.makeRandomFile(upload, count: 200 << 20)
            try RestartTests.pacedSender.write(toFile: "\(directory)/sender.py", atomically: true, encoding: .utf8)
            let sending = try hosts.client.exec("acme", ["python3", "\(directory)/sender.py", hosts.lab.server.address6, "9000", upload],
                                                log: "sender.log")
            var received = ""
            try NetworkLab.poll("the instance to receive the upload", timeout: 20) {
                let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
                received = names.first { $0.hasPrefix("acme.from.") }.map { "\(directory)/\($0)" } ?? ""
                return !received.isEmpty
            }
            try RestartTests.waitForTransferUnderway(received, bytes: 1 << 20)
            hosts.server.kill()
            try hosts.server.start(["--log-level", "debug"])
            XCTAssertEqual(hosts.client.stop(), 0)
            XCTAssertTrue(hosts.client.log.contains("--keep-connections"), hosts.client.log)
            try hosts.client.start(keeping)
            for engine in [hosts.server, hosts.client] where Privileged.datapath == "userspace" {
                XCTAssertTrue(engine.log.contains("flows restored from the last engine"), engine.log)
            }
            try NetworkLab.poll("the upload to finish", timeout: 120) { !sending.isRunning }
            XCTAssertEqual(sending.terminationStatus, 0, (try? String(contentsOfFile: "\(directory)/client/sender.log", encoding: .utf8)) ?? "")
            try NetworkLab.poll("the upload to arrive whole", timeout: 30) {
                (try? NetworkLab.sha256(received)) == (try? NetworkLab.sha256(upload))
            }
        }
    }

    func testForgedReplayedAndTruncatedNegotiationsAreRejected() throws {
        try withEngines("coop-auth") { hosts in
            _ = try startInstance(hosts, aid: "acme", megabytes: 1)
            try Self.negotiateScript.write(toFile: "\(hosts.directory)/negotiate.py", atomically: true, encoding: .utf8)
            let output = try hosts.lab.checked(hosts.lab.client, ["python3", "\(hosts.directory)/negotiate.py", Self.key, "checks"])
            XCTAssertEqual(output.standardOutput, "good True\nreplayed False\nforged False\ntruncated False\n")
            let statistics = try JSONDecoder().decode(EngineStatistics.self, from: Data(hosts.server.stats(json: true).standardOutput.utf8))
            XCTAssertEqual(statistics.negotiations["accepted"], 1)
            XCTAssertEqual(statistics.negotiations["replayed"], 1)
            XCTAssertEqual(statistics.negotiations["forged"], 1)
            XCTAssertEqual(statistics.negotiations["malformed"], 1)
            // And it keeps serving real clients.
            let served = try hosts.client.execAndWait("acme", ["socat", "-u", "OPEN:/dev/null", "TCP:\(hosts.lab.server.address):9000"])
            XCTAssertEqual(served.status, 0, served.standardError)
        }
    }

    func testPeerEngineDownFailsFastAndRecovers() throws {
        try withEngines("coop-down") { hosts in
            _ = try startInstance(hosts, aid: "acme", megabytes: 1)
            XCTAssertEqual(hosts.server.stop(), 0)
            let down = try hosts.client.execAndWait("acme", ["socat", "-u", "OPEN:/dev/null", "TCP:\(hosts.lab.server.address):9000"])
            XCTAssertNotEqual(down.status, 0)
            XCTAssertTrue(down.standardError.contains("Connection refused"), down.standardError)
            // Refused because the peer's negotiation port reset the connection, not after the
            // negotiation timeout ("no answer ... within").
            try NetworkLab.poll("a log line naming the peer engine", timeout: 5) {
                hosts.client.log.contains("cooperative connection refused") && hosts.client.log.contains("198.18.0.1:9901")
            }
            XCTAssertTrue(hosts.client.log.contains("is unreachable: connection refused"), hosts.client.log)
            XCTAssertFalse(hosts.client.log.contains("no answer from negotiation peer"), hosts.client.log)
            try hosts.server.start()
            try NetworkLab.poll("new connections to work again", timeout: 10) {
                (try? hosts.client.execAndWait("acme", ["socat", "-u", "OPEN:/dev/null", "TCP:\(hosts.lab.server.address):9000"]).status) == 0
            }
        }
    }

    /// One host, one engine in local mode with `ports`, removed afterwards.
    private func withLocalEngine(_ tag: String, ports: String, arguments: [String] = [],
                                 _ body: (NetworkLab, EngineRun) throws -> Void) throws {
        try Privileged.requireRoot()
        let lab = try NetworkLab(name: Privileged.labName(tag))
        defer { lab.tearDown() }
        let directory = Privileged.scratchDirectory(tag)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let engine = try Privileged.engine(lab: lab, vpmExecutable: try Privileged.vpmExecutable(), directory: directory, configuration: """
            virtual-ports: 20000-20999
            ports: \(ports)
            \(Self.applications)
            cooperative: {local: true}
            """)
        try engine.start(arguments)
        defer { _ = engine.stop() }
        do { try body(lab, engine) } catch {
            XCTFail("engine log:\n\(engine.log)")
            throw error
        }
    }

    /// Local mode, UDP: two dnsmasq copies on one host, and programs under `vpm exec` on the
    /// same host querying 127.0.0.1, ::1 and the host's addresses, from connected sockets
    /// and from unconnected ones (sendto, sendmsg):
    /// each hears only its own AID's copy; a program of an AID without one is refused.
    func testLocalModeUDPOverEachFamily() throws {
        try withLocalEngine("local-udp", ports: "[5353/udp, 5353]") { lab, engine in
            let script = try UDPServers.startDNS(engine, aids: ["acme", "globex"])
            let addresses = ["127.0.0.1", "::1", lab.server.address, lab.server.address6]
            for address in addresses {
                for aid in ["acme", "globex"] {
                    for way in ["connect", "sendto", "sendmsg"] {
                        let how = "\(aid) via \(address), \(way)"
                        let output = try engine.execAndWait(aid, ["python3", script, address, "5353", "1000", way], timeout: 150)
                        XCTAssertEqual(output.status, 0, "\(how): \(output.standardError)")
                        guard output.status == 0 else { continue }
                        let result = try JSONDecoder().decode(UDPServers.LoadResult.self, from: Data(output.standardOutput.utf8))
                        XCTAssertEqual(result.answers, [aid: 1000], how)
                        XCTAssertEqual(result.retried, 0, how)
                    }
                }
            }
            for address in ["127.0.0.1", "::1"] {
                let refused = try engine.execAndWait("initech", ["python3", script, address, "5353", "1", "connect"])
                XCTAssertEqual(refused.status, 2, "\(address): \(refused.standardOutput) \(refused.standardError)")
            }
            let flows = try JSONDecoder().decode([FlowRecord].self, from: Data(engine.flows(json: true).standardOutput.utf8))
                .filter { $0.transport == "udp" && $0.mode == "local" }
            // Each load (2 AIDs × connect, sendto, sendmsg): its warm-up socket and its own.
            XCTAssertEqual(flows.count, 2 * 2 * 3 * addresses.count, "\(flows)")
            XCTAssertEqual(Set(flows.map(\.server)), Set(addresses))
        }
    }

    /// Local mode: a UDP client port that another AID's socket held a moment before (its
    /// flow still alive: conntrack's NAT on the kernel and socket datapaths, the flow table
    /// on the userspace one) carries the new socket's queries to its own AID's instance.
    /// The old flow goes when the new socket registers. Before that, globex's queries from a
    /// port acme had just used reached acme's instance: a crossing, first seen when an
    /// ephemeral port happened to be reused.
    func testAUDPClientPortReusedByAnotherAIDReachesItsOwnInstance() throws {
        try withLocalEngine("local-udp-reuse", ports: "[5353/udp, 5353]") { lab, engine in
            let script = try UDPServers.startDNS(engine, aids: ["acme", "globex"])
            for (family, address) in ["127.0.0.1", "::1"].enumerated() {
                for (index, way) in ["connect", "sendto", "sendmsg"].enumerated() {
                    let sourcePort = 41_000 + 10 * family + index
                    for aid in ["acme", "globex", "acme"] {
                        let how = "\(aid) from port \(sourcePort) to \(address), \(way)"
                        let output = try engine.execAndWait(aid, ["python3", script, address, "5353", "50", way, "\(sourcePort)"], timeout: 60)
                        XCTAssertEqual(output.status, 0, "\(how): \(output.standardError)")
                        guard output.status == 0 else { continue }
                        let result = try JSONDecoder().decode(UDPServers.LoadResult.self, from: Data(output.standardOutput.utf8))
                        XCTAssertEqual(result.answers, [aid: 50], how)
                    }
                }
            }
            XCTAssertEqual(engine.log.components(separatedBy: "client port taken over by another AID").count - 1, 2 * 3 * 2, engine.log)
        }
    }

    /// Local mode: the engine restarts in the middle of a 200 MB upload from one program under
    /// `vpm exec` to its AID's instance on the same host — killed while the upload crosses
    /// loopback, stopped with `--keep-connections` while it goes to the host's IPv6 address —
    /// and the upload arrives whole. Kernel datapath: conntrack carries the connection
    /// meanwhile; userspace: the next engine restores the local flow from the snapshot, and
    /// full-sized loopback segments (MSS clamped, loopback queue without GSO) pass whole.
    /// The instance (socat without fork) stops listening once it accepted: it drains.
    func testLocalModeRestartMidTransfer() throws {
        let cases: [(tag: String, arguments: [String], server: (NetworkLab) -> String)] = [
            ("local-restart-kill", [], { _ in "127.0.0.1" }),
            ("local-restart-keep", ["--keep-connections"], { $0.server.address6 }),
        ]
        for restart in cases {
            try withLocalEngine(restart.tag, ports: "[9000]", arguments: restart.arguments) { lab, engine in
                let directory = Privileged.scratchDirectory(restart.tag)
                let upload = "\(directory)/upload", received = "\(directory)/received"
                _ = try engine.exec("acme", ["socat", "-u", "TCP6-LISTEN:9000,ipv6only=0,reuseaddr", "CREATE:\(received)"], log: "acme.log")
                try NetworkLab.poll("the instance to register", timeout: 10) {
                    ((try? JSONDecoder().decode([AppRecord].self, from: Data(engine.apps(json: true).standardOutput.utf8))) ?? []).count == 1
                }
                try lab.waitForListener(lab.server, port: 20000)
                try NetworkLab.makeRandomFile(upload, count: 200 << 20)
                try RestartTests.pacedSender.write(toFile: "\(directory)/sender.py", atomically: true, encoding: .utf8)
                let sending = try engine.exec("acme", ["python3", "\(directory)/sender.py", restart.server(lab), "9000", upload], log: "sender.log")
                try RestartTests.waitForTransferUnderway(received, bytes: 1 << 20)
                if !restart.arguments.contains("--keep-connections") {
                    engine.kill()
                } else {
                    XCTAssertEqual(engine.stop(), 0)
                }
                try engine.start(restart.arguments)
                if Privileged.datapath == "userspace" {
                    XCTAssertTrue(engine.log.contains("flows restored from the last engine"), engine.log)
                }
                // socat without fork closed its listener after the accept: the instance drains,
                // its connection still translated, and the restarted engine knows it.
                try NetworkLab.poll("acme's instance to be draining", timeout: 10) {
                    ((try? JSONDecoder().decode([AppRecord].self, from: Data(engine.apps(json: true).standardOutput.utf8))) ?? [])
                        .contains { $0.aid == "acme" && $0.draining == true }
                }
                // Draining: a new connection of the AID is refused at once, the old one goes on.
                let refused = try engine.execAndWait("acme", ["socat", "-u", "OPEN:/dev/null", "TCP:\(NetworkLab.endpoint(restart.server(lab), 9000))"])
                XCTAssertNotEqual(refused.status, 0)
                XCTAssertTrue(refused.standardError.contains("Connection refused"), refused.standardError)
                let flows = try JSONDecoder().decode([FlowRecord].self, from: Data(engine.flows(json: true).standardOutput.utf8))
                XCTAssertTrue(flows.contains { $0.mode == "local" && $0.aid == "acme" && $0.server == restart.server(lab) },
                              "the restarted engine lists the flow: \(flows)")
                try NetworkLab.poll("the upload to finish", timeout: 120) { !sending.isRunning }
                XCTAssertEqual(sending.terminationStatus, 0, (try? String(contentsOfFile: "\(directory)/sender.log", encoding: .utf8)) ?? "")
                try NetworkLab.poll("the upload to arrive whole", timeout: 30) {
                    (try? NetworkLab.sha256(received)) == (try? NetworkLab.sha256(upload))
                }
            }
        }
    }

    /// Local mode over loopback and the host's own address, in each family.
    func testLocalModeOverLoopbackAndTheHostsOwnAddress() throws {
        try withLocalEngine("local", ports: "[9000]") { lab, engine in
            for aid in ["acme", "globex"] {
                _ = try engine.exec(aid, ["socat", "TCP6-LISTEN:9000,ipv6only=0,reuseaddr,fork", "SYSTEM:echo \(aid)"], log: "\(aid).log")
            }
            try NetworkLab.poll("two instances", timeout: 10) {
                ((try? JSONDecoder().decode([AppRecord].self, from: Data(engine.apps(json: true).standardOutput.utf8))) ?? []).count == 2
            }
            for port in [UInt16(20000), 20001] { try lab.waitForListener(lab.server, port: port) }
            let addresses = ["127.0.0.1", "::1", lab.server.address, lab.server.address6]
            for address in addresses {
                for aid in ["acme", "globex"] {
                    let output = try engine.execAndWait(aid, ["socat", "-T", "3", "STDIO", "TCP:\(NetworkLab.endpoint(address, 9000))"])
                    XCTAssertEqual(output.standardOutput, "\(aid)\n", "\(aid) via \(address): \(output.standardError)")
                }
            }
            // Refused with a reset, at once: a dropped SYN would say "Connection timed out".
            for address in ["127.0.0.1", "::1"] {
                let refused = try engine.execAndWait("initech", ["socat", "-u", "OPEN:/dev/null", "TCP:\(NetworkLab.endpoint(address, 9000))"])
                XCTAssertNotEqual(refused.status, 0)
                XCTAssertTrue(refused.standardError.contains("Connection refused"), "\(address): \(refused.standardError)")
            }
            // A program of no AID (not under vpm exec) is not vpm's: it reaches a plain
            // listener on 127.0.0.1:9000. On the kernel datapath its SYN is ACCEPTed from
            // inside the NAT hook, once: a verdict that queued it again would loop.
            let unchanged = {
                ((try? JSONDecoder().decode(EngineStatistics.self, from: Data(engine.stats(json: true).standardOutput.utf8)))?.acceptedUnchanged) ?? 0
            }
            let before = unchanged()
            _ = try lab.spawn(lab.server, ["socat", "TCP-LISTEN:9000,bind=127.0.0.1,reuseaddr,fork", "SYSTEM:echo plain"],
                              log: "\(Privileged.scratchDirectory("local"))/plain.log")
            try lab.waitForListener(lab.server, port: 9000)
            let plain = try lab.checked(lab.server, ["socat", "-T", "3", "STDIO", "TCP:127.0.0.1:9000"])
            XCTAssertEqual(plain.standardOutput, "plain\n", plain.standardError)
            try NetworkLab.poll("the plain connection to be counted", timeout: 5) { unchanged() > before }
            if Privileged.decidesInKernel {
                Thread.sleep(forTimeInterval: 0.5)  // statistics are published every 200 ms
                XCTAssertEqual(unchanged() - before, 1, "one SYN, accepted once")
            }
            let flows = try JSONDecoder().decode([FlowRecord].self, from: Data(engine.flows(json: true).standardOutput.utf8))
            XCTAssertEqual(flows.filter { $0.mode == "local" }.count, 2 * addresses.count, "\(flows)")
            XCTAssertEqual(Set(flows.map(\.server)), Set(addresses), "\(flows)")

            // A registration for a transport vpm does not know is refused, not taken for TCP.
            var registration = ControlRequest(.connect)
            registration.aid = "acme"
            registration.localAddress = "127.0.0.1"
            registration.localPort = 40000
            registration.transport = "sctp"
            let answer = try ControlSocket.send(registration, to: engine.socketPath)
            XCTAssertEqual(answer.errorCode, "EINVAL")
            XCTAssertEqual(answer.error, "transport must be tcp or udp, not 'sctp'")
        }
    }
}
