import Control
import Foundation
import NetworkLab
import TestSupport
import XCTest

/// The kernel datapath's promise: an established connection never needs the engine, so it
/// survives the engine's death (SIGKILL: nothing cleaned up) and restart; the restarted
/// engine lists it again, with its AID, from conntrack.
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
        let engine = try EngineRun(lab: lab, vpmExecutable: try Privileged.vpmExecutable(), directory: directory,
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

        // 200 MB at 40 MB/s: five seconds, long enough to kill and restart the engine midway.
        let transfer = try lab.spawn(lab.clients[0], ["python3", "\(directory)/receiver.py", lab.server.address,
                                                      "\(directory)/received", "\(40 << 20)"],
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
        let again = try lab.checked(lab.clients[0], ["socat", "-u", "TCP:\(lab.server.address):9000", "CREATE:\(directory)/again"],
                                    timeout: 30)
        _ = again
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
}
