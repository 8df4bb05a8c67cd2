import Control
import Foundation
import NetworkLab
import TestSupport
import XCTest

/// The kernel datapath's promise: an established connection never needs the engine, so it
/// survives the engine's death (SIGKILL: nothing cleaned up) and restart; the restarted
/// engine lists it again, with its AID, from conntrack. A clean stop ends the connections
/// and leaves nothing behind, unless --keep-connections; without nft the engine falls back.
final class KernelRestartTests: XCTestCase {
    static let configuration = """
        virtual-ports: 20000-20999
        ports: [9000]
        applications:
          acme: {instances: {9000: 20017}}
          globex: {instances: {9000: 20018}}
        sources:
          - {from: 198.18.1.0/24, aid: acme}
          - {from: 198.18.2.0/24, aid: globex}
        """

    /// Receives everything from ADDRESS:9000 into FILE at about RATE bytes/s, and prints the
    /// longest pause between two reads (a stall the engine's absence would cause).
    static let receiver = """
        import socket, sys, time
        address, path, rate = sys.argv[1], sys.argv[2], float(sys.argv[3])
        s = socket.create_connection((address, 9000), timeout=30)
        start = last = time.monotonic(); total = 0; gap = 0.0
        with open(path, "wb") as out:
            while True:
                data = s.recv(65536)
                if not data: break
                now = time.monotonic(); gap = max(gap, now - last); last = now
                out.write(data); total += len(data)
                ahead = total / rate - (now - start)
                if ahead > 0: time.sleep(ahead)
        print(f"{total} {gap:.3f}")
        """

    func testTransferSurvivesEngineKillAndRestart() throws {
        try Privileged.requireRoot()
        let lab = try NetworkLab(name: Privileged.labName("restart"), clientAddresses: ["198.18.1.2", "198.18.2.2"])
        defer { lab.tearDown() }
        let directory = Privileged.scratchDirectory("restart")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let engine = try Privileged.engine(lab: lab, vpmExecutable: try Privileged.vpmExecutable(), directory: directory,
                                   configuration: Self.configuration)
        engine.datapath = "kernel"
        let megabytes = 200
        for (aid, port) in [("acme", 20017), ("globex", 20018)] {
            try NetworkLab.makeRandomFile("\(directory)/\(aid).download", count: aid == "acme" ? megabytes << 20 : 1 << 20)
            _ = try lab.spawn(lab.server, ["socat", "-t", "60", "TCP-LISTEN:\(port),fork,reuseaddr",
                                           "OPEN:\(directory)/\(aid).download,rdonly"], log: "\(directory)/\(aid).log")
            try lab.waitForListener(lab.server, port: UInt16(port))
        }
        try Self.receiver.write(toFile: "\(directory)/receiver.py", atomically: true, encoding: .utf8)
        try engine.start()
        defer { _ = engine.stop() }

        // 200 MB at 25 MB/s: eight seconds, long enough to kill and restart the engine midway.
        let transfer = try lab.spawn(lab.clients[0], ["python3", "\(directory)/receiver.py", lab.server.address,
                                                      "\(directory)/received", "\(25 << 20)"],
                                     log: "\(directory)/receiver.log")
        try NetworkLab.poll("the transfer to start", timeout: 10) {
            ((try? FileManager.default.attributesOfItem(atPath: "\(directory)/received")[.size] as? Int) ?? 0) > 8 << 20
        }
        engine.kill()
        usleep(300_000)
        XCTAssertTrue(try lab.ruleset(lab.server).contains("table inet vpm"), "a killed engine cannot remove its table")
        try engine.start()
        XCTAssertTrue(transfer.isRunning, "the transfer should still be running after the restart")

        let flows = try JSONDecoder().decode([FlowRecord].self, from: Data(try engine.flows(json: true).standardOutput.utf8))
        let flow = try XCTUnwrap(flows.first { $0.client == "198.18.1.2" }, "the restarted engine lost the flow: \(flows)")
        XCTAssertEqual(flow.aid, "acme")
        XCTAssertEqual(flow.virtualPort, 20017)
        XCTAssertEqual(flow.initialPort, 9000)
        XCTAssertEqual(flow.state, "established")
        XCTAssertTrue(engine.log.contains("flows rebuilt from conntrack"), engine.log)

        // A new connection from the same client after the restart: still acme's instance.
        try lab.checked(lab.clients[0], ["socat", "-u", "TCP:\(lab.server.address):9000", "CREATE:\(directory)/again"], timeout: 30)
        XCTAssertEqual(try NetworkLab.sha256("\(directory)/again"), try NetworkLab.sha256("\(directory)/acme.download"))

        transfer.waitUntilExit()
        XCTAssertEqual(transfer.terminationStatus, 0, (try? String(contentsOfFile: "\(directory)/receiver.log", encoding: .utf8)) ?? "")
        let report = try String(contentsOfFile: "\(directory)/receiver.log", encoding: .utf8)
            .split(separator: "\n").last.map { $0.split(separator: " ") } ?? []
        XCTAssertEqual(report.count, 2, "receiver said: \(report)")
        XCTAssertEqual(report.first.flatMap { Int($0) }, megabytes << 20)
        let gap = try XCTUnwrap(report.last.flatMap { Double($0) })
        XCTAssertLessThan(gap, 1.0, "the transfer stalled for \(gap) s around the engine's restart")
        XCTAssertEqual(try NetworkLab.sha256("\(directory)/received"), try NetworkLab.sha256("\(directory)/acme.download"),
                       "the transfer's bytes changed or came from another instance")
    }

    /// Source-routed connections of AIDs with an instance are decided in the kernel, from
    /// the maps the engine keeps: they go on while the engine is frozen (SIGSTOP: its queue
    /// is read by nobody), each client to its own AID's instance, while a client of no AID
    /// waits for the engine and is refused once it runs again. The engine then lists the
    /// kernel's connections, learned from conntrack.
    func testTheKernelDecidesSourceRoutedConnectionsWithoutTheEngine() throws {
        try Privileged.requireRoot()
        let lab = try NetworkLab(name: Privileged.labName("kdecide"), clientAddresses: ["198.18.1.2", "198.18.2.2", "198.18.9.9"])
        defer { lab.tearDown() }
        let directory = Privileged.scratchDirectory("kdecide")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let engine = try Privileged.engine(lab: lab, vpmExecutable: try Privileged.vpmExecutable(), directory: directory,
                                           configuration: Self.configuration)
        engine.datapath = "kernel"
        for (aid, port) in [("acme", 20017), ("globex", 20018)] {
            try NetworkLab.makeRandomFile("\(directory)/\(aid).download", count: 1 << 20)
            _ = try lab.spawn(lab.server, ["socat", "-t", "30", "TCP-LISTEN:\(port),fork,reuseaddr",
                                           "OPEN:\(directory)/\(aid).download,rdonly"], log: "\(directory)/\(aid).log")
            try lab.waitForListener(lab.server, port: UInt16(port))
        }
        try engine.start()
        defer { _ = engine.stop() }
        let map = try lab.checked(lab.server, ["nft", "list", "map", "inet", "vpm", "networks4"]).standardOutput
        XCTAssertTrue(map.contains("tcp . 198.18.1.0/24 . 9000 : 0x50014e31"), map)
        XCTAssertTrue(map.contains("tcp . 198.18.2.0/24 . 9000 : 0x50024e32"), map)

        engine.signal(SIGSTOP)
        var frozen = true
        defer { if frozen { engine.signal(SIGCONT) } }
        let stranger = try lab.spawn(lab.clients[2], ["socat", "-u", "TCP:\(lab.server.address):9000,connect-timeout=20", "CREATE:\(directory)/stranger"],
                                     log: "\(directory)/stranger.log")
        for round in 0..<3 {
            for (index, aid) in [(0, "acme"), (1, "globex")] {
                let file = "\(directory)/\(aid).\(round)"
                try lab.checked(lab.clients[index], ["socat", "-u", "TCP:\(lab.server.address):9000,connect-timeout=5", "CREATE:\(file)"], timeout: 20)
                XCTAssertEqual(try NetworkLab.sha256(file), try NetworkLab.sha256("\(directory)/\(aid).download"),
                               "\(aid)'s client reached another instance with no engine running")
            }
        }
        XCTAssertTrue(stranger.isRunning, "a client of no AID waits for the engine, its SYN queued")
        engine.signal(SIGCONT)
        frozen = false
        stranger.waitUntilExit()
        XCTAssertNotEqual(stranger.terminationStatus, 0)
        let said = (try? String(contentsOfFile: "\(directory)/stranger.log", encoding: .utf8)) ?? ""
        XCTAssertTrue(said.contains("Connection refused"), "the engine refuses the stranger once it runs: \(said)")

        let flows = try JSONDecoder().decode([FlowRecord].self, from: Data(try engine.flows(json: true).standardOutput.utf8))
        for (client, aid, port) in [("198.18.1.2", "acme", UInt16(20017)), ("198.18.2.2", "globex", 20018)] {
            let theirs = flows.filter { $0.client == client }
            XCTAssertEqual(theirs.count, 3, "\(client)'s connections, learned from conntrack: \(flows)")
            XCTAssertTrue(theirs.allSatisfy { $0.aid == aid && $0.virtualPort == port && $0.mode == "source" }, "\(theirs)")
        }
        var statistics = EngineStatistics()
        // Published every 200 ms; the stranger's retransmitted SYNs waited in the queue too.
        try NetworkLab.poll("the stranger's refusal to be counted", timeout: 5) {
            let output = (try? engine.stats(json: true).standardOutput) ?? ""
            statistics = (try? JSONDecoder().decode(EngineStatistics.self, from: Data(output.utf8))) ?? statistics
            return (statistics.reasons["noApplication"] ?? 0) >= 1
        }
        XCTAssertEqual(statistics.flowsDecidedInKernel, 6)
    }

    /// A connection that stays open (socat holds it) from the acme client, through `engine`.
    private func openConnection(_ lab: NetworkLab, _ directory: String, name: String) throws -> BackgroundProcess {
        let client = try lab.spawn(lab.clients[0], ["socat", "-u", "TCP:\(lab.server.address):9000", "CREATE:\(directory)/\(name)"],
                                   log: "\(directory)/\(name).log")
        do {
            try NetworkLab.poll("the connection to be tracked", timeout: 10) {
                (try? lab.checked(lab.server, ["conntrack", "-L", "-m", "0x50000000/0xf0000000"]).standardOutput)?.contains("ESTABLISHED") ?? false
            }
        } catch {
            let table = (try? lab.run(lab.server, ["conntrack", "-L"])).map { $0.standardOutput + $0.standardError } ?? ""
            let log = (try? String(contentsOfFile: "\(directory)/\(name).log", encoding: .utf8)) ?? ""
            XCTFail("conntrack:\n\(table)\nclient:\n\(log)")
            throw error
        }
        return client
    }

    func testCleanStopEndsConnectionsUnlessAskedToKeepThem() throws {
        try Privileged.requireRoot()
        let lab = try NetworkLab(name: Privileged.labName("kstop"), clientAddresses: ["198.18.1.2", "198.18.2.2"])
        defer { lab.tearDown() }
        // The instance's forked children hold connections the test ended on purpose: kill
        // everything in the namespaces first, or stopping the spawned processes waits for them.
        defer { NetworkLab.removeStale(prefix: Privileged.labName("kstop")) }
        let directory = Privileged.scratchDirectory("kstop")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        // An instance that sends a line and then keeps its connections open.
        _ = try lab.spawn(lab.server, ["socat", "TCP-LISTEN:20017,fork,reuseaddr", "SYSTEM:echo acme; sleep 120"],
                          log: "\(directory)/acme.log")
        try lab.waitForListener(lab.server, port: 20017)
        // The nat table exists already, as on most hosts (iptables keeps an emptied table).
        for tool in ["iptables", "ip6tables"] {
            try lab.checked(lab.server, [tool, "-w", "-t", "nat", "-A", "PREROUTING", "-p", "tcp", "--dport", "2222", "-j", "REDIRECT", "--to-ports", "22"])
        }
        let before = try lab.ruleset(lab.server)
        let accounting = try lab.checked(lab.server, ["sysctl", "-n", "net.netfilter.nf_conntrack_acct"]).standardOutput
        let marked = { (try? lab.checked(lab.server, ["conntrack", "-L", "-m", "0x50000000/0xf0000000"]).standardOutput) ?? "" }

        let engine = try Privileged.engine(lab: lab, vpmExecutable: try Privileged.vpmExecutable(), directory: directory,
                                   configuration: Self.configuration)
        engine.datapath = "kernel"
        try engine.start()
        _ = try openConnection(lab, directory, name: "first")
        XCTAssertEqual(try lab.checked(lab.server, ["sysctl", "-n", "net.netfilter.nf_conntrack_acct"]).standardOutput, "1\n")
        XCTAssertEqual(engine.stop(), 0, engine.log)
        XCTAssertFalse(marked().contains("ESTABLISHED"), "a clean stop must end vpm's connections:\n\(marked())")
        XCTAssertEqual(try lab.ruleset(lab.server), before, "a clean stop must remove the rules and the nft table")
        XCTAssertEqual(try lab.checked(lab.server, ["sysctl", "-n", "net.netfilter.nf_conntrack_acct"]).standardOutput, accounting,
                       "accounting is put back as it was")

        try engine.start(["--keep-connections"])
        let kept = try openConnection(lab, directory, name: "kept")
        XCTAssertEqual(engine.stop(), 0, engine.log)
        XCTAssertTrue(engine.log.contains("--keep-connections"), engine.log)
        XCTAssertTrue(marked().contains("ESTABLISHED"), "--keep-connections must leave the connection")
        XCTAssertTrue(try lab.ruleset(lab.server).contains("table inet vpm"))
        XCTAssertTrue(kept.isRunning)
        try engine.start()
        let flows = try JSONDecoder().decode([FlowRecord].self, from: Data(try engine.flows(json: true).standardOutput.utf8))
        XCTAssertEqual(flows.map(\.aid), ["acme"], "the next engine takes the kept connection over")
        XCTAssertEqual(engine.stop(), 0, engine.log)
        XCTAssertEqual(try lab.ruleset(lab.server), before)
    }

    /// Engines before 2026-12-06 queued from the mangle table and had a filter chain
    /// `decide` in their nft table, which every packet passed. An engine starting over what
    /// such an engine left (killed, or stopped with --keep-connections) removes both, serves
    /// its clients through the nat table, and leaves nothing of either layout when it stops;
    /// told not to install rules, it refuses to start beside the older queue chain.
    func testAnEngineTakesOverFromTheOlderMangleLayout() throws {
        try Privileged.requireRoot()
        let lab = try NetworkLab(name: Privileged.labName("klayout"), clientAddresses: ["198.18.1.2", "198.18.2.2"])
        defer { lab.tearDown() }
        let directory = Privileged.scratchDirectory("klayout")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        for (aid, port) in [("acme", 20017), ("globex", 20018)] {
            try NetworkLab.makeRandomFile("\(directory)/\(aid).download", count: 1 << 20)
            _ = try lab.spawn(lab.server, ["socat", "-t", "30", "TCP-LISTEN:\(port),fork,reuseaddr",
                                           "OPEN:\(directory)/\(aid).download,rdonly"], log: "\(directory)/\(aid).log")
            try lab.waitForListener(lab.server, port: UInt16(port))
        }
        // The nat and mangle tables exist already, as on most hosts (iptables keeps an
        // emptied table), so that the ruleset after the stop can be compared.
        for tool in ["iptables", "ip6tables"] {
            try lab.checked(lab.server, [tool, "-w", "-t", "nat", "-A", "PREROUTING", "-p", "tcp", "--dport", "2222", "-j", "REDIRECT", "--to-ports", "22"])
            try lab.checked(lab.server, [tool, "-w", "-t", "mangle", "-A", "PREROUTING", "-p", "tcp", "--dport", "22", "-j", "ACCEPT"])
        }
        let before = try lab.ruleset(lab.server)
        // What an older engine left: its mangle chain with the jump to it, and its table's
        // filter chain `decide`.
        for tool in ["iptables", "ip6tables"] {
            try lab.checked(lab.server, [tool, "-w", "-t", "mangle", "-N", "VPM-PREROUTING"])
            try lab.checked(lab.server, [tool, "-w", "-t", "mangle", "-A", "VPM-PREROUTING", "-m", "conntrack", "!", "--ctstate", "NEW", "-j", "RETURN"])
            try lab.checked(lab.server, [tool, "-w", "-t", "mangle", "-A", "VPM-PREROUTING", "!", "-i", "lo", "-p", "tcp", "--dport", "9000", "--syn",
                                         "-m", "connmark", "!", "--mark", "0x50000000/0xf0000000", "-j", "NFQUEUE", "--queue-num", "0"])
            try lab.checked(lab.server, [tool, "-w", "-t", "mangle", "-I", "PREROUTING", "1", "-j", "VPM-PREROUTING"])
        }
        let older = """
            add table inet vpm
            add chain inet vpm decide { type filter hook prerouting priority -160; policy accept; }
            add chain inet vpm lookup
            add rule inet vpm decide ct state new jump lookup
            """
        try older.write(toFile: "\(directory)/older.nft", atomically: true, encoding: .utf8)
        try lab.checked(lab.server, ["nft", "-f", "\(directory)/older.nft"])

        let engine = try Privileged.engine(lab: lab, vpmExecutable: try Privileged.vpmExecutable(), directory: directory,
                                           configuration: Self.configuration)
        engine.datapath = "kernel"
        // With --no-rules the operator installs the rules: the engine will not run beside
        // the older queue chain, whose rule would queue each REPEAT again, forever.
        XCTAssertThrowsError(try engine.start(["--no-rules"]))
        XCTAssertTrue(engine.log.contains("an older vpm's queue chain is installed (iptables -t mangle VPM-PREROUTING)"), engine.log)
        try engine.start()
        defer { _ = engine.stop() }
        let table = try lab.checked(lab.server, ["nft", "list", "table", "inet", "vpm"]).standardOutput
        XCTAssertFalse(table.contains("chain decide"), table)
        XCTAssertTrue(table.contains("chain first"), table)
        for tool in ["iptables", "ip6tables"] {
            let mangle = try lab.checked(lab.server, [tool, "-w", "-t", "mangle", "-S"]).standardOutput
            XCTAssertFalse(mangle.contains("VPM-"), "\(tool): the older queue chain is gone:\n\(mangle)")
            let nat = try lab.checked(lab.server, [tool, "-w", "-t", "nat", "-S"]).standardOutput
            XCTAssertTrue(nat.contains("-A PREROUTING -j VPM-PREROUTING"), "\(tool):\n\(nat)")
        }
        for (index, aid) in [(0, "acme"), (1, "globex")] {
            let file = "\(directory)/\(aid).received"
            try lab.checked(lab.clients[index], ["socat", "-u", "TCP:\(lab.server.address):9000,connect-timeout=5", "CREATE:\(file)"], timeout: 20)
            XCTAssertEqual(try NetworkLab.sha256(file), try NetworkLab.sha256("\(directory)/\(aid).download"), "\(aid)'s client")
        }
        XCTAssertEqual(engine.stop(), 0, engine.log)
        XCTAssertEqual(try lab.ruleset(lab.server), before, "nothing of either layout is left")
    }

    /// Without nft, `--datapath kernel` runs the userspace datapath and says why.
    func testFallsBackToUserspaceWithoutNFT() throws {
        try Privileged.requireRoot()
        let lab = try NetworkLab(name: Privileged.labName("kfall"), clientAddresses: ["198.18.1.2"])
        defer { lab.tearDown() }
        let directory = Privileged.scratchDirectory("kfall")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let tools = "\(directory)/bin"
        try FileManager.default.createDirectory(atPath: tools, withIntermediateDirectories: true)
        for tool in ["iptables", "ip6tables", "iptables-restore", "ip6tables-restore", "sh"] {
            let path = try lab.checked(lab.server, ["sh", "-c", "command -v \(tool)"]).standardOutput
                .trimmingCharacters(in: .whitespacesAndNewlines)
            try FileManager.default.createSymbolicLink(atPath: "\(tools)/\(tool)", withDestinationPath: path)
        }
        try Self.configuration.write(toFile: "\(directory)/vpm.yaml", atomically: true, encoding: .utf8)
        let vpm = try Privileged.vpmExecutable()
        let engine = try lab.spawn(lab.server, ["env", "PATH=\(tools)", vpm, "run", "--config", "\(directory)/vpm.yaml",
                                                "--socket", "\(directory)/vpm.sock", "--datapath", "kernel"],
                                   log: "\(directory)/engine.log")
        let log = { (try? String(contentsOfFile: "\(directory)/engine.log", encoding: .utf8)) ?? "" }
        try NetworkLab.poll("the engine to start", timeout: 15) { log().contains("engine running") || !engine.isRunning }
        XCTAssertTrue(log().contains("kernel datapath unavailable, falling back to the userspace datapath"), log())
        XCTAssertTrue(log().contains("nft command is missing"), log())
        XCTAssertTrue(log().contains("datapath=userspace"), log())
        lab.stop(engine, grace: 10)
        XCTAssertEqual(engine.terminationStatus, 0, log())
    }
}
