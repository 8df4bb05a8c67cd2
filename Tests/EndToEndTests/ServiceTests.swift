import Control
import Foundation
import NetworkLab
import TestSupport
import XCTest

/// `vpm run` as a systemd service (Type=notify), without a systemd: a receiver speaks the
/// notify socket protocol (one datagram per message to $NOTIFY_SOCKET), and on each
/// message records whether the engine's rules were in at that moment.
final class ServiceTests: XCTestCase {
    static let receiver = """
        import socket, subprocess, sys
        path, namespace, out = sys.argv[1:4]
        receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        receiver.bind(path)
        with open(out, "a") as log:
            log.write("listening\\n"); log.flush()
            while True:
                message = receiver.recv(4096).decode()
                rules = subprocess.run(["ip", "netns", "exec", namespace, "iptables-save"], capture_output=True, text=True).stdout
                log.write(repr(message) + " rules=" + str("-j VPM-" in rules) + "\\n"); log.flush()
        """

    /// Starts the receiver and points the engine at it; the file its messages go to.
    static func listenForNotifications(_ lab: NetworkLab, _ engine: EngineRun, _ directory: String) throws -> String {
        try receiver.write(toFile: "\(directory)/receiver.py", atomically: true, encoding: .utf8)
        let socketPath = "\(directory)/notify.sock"
        let messages = "\(directory)/notify.log"
        _ = try lab.spawn(lab.server, ["python3", "\(directory)/receiver.py", socketPath, lab.server.namespace, messages],
                          log: "\(directory)/receiver.log")
        try NetworkLab.poll("the notify receiver to listen", timeout: 10) {
            ((try? String(contentsOfFile: messages, encoding: .utf8)) ?? "").contains("listening")
        }
        engine.environment = ["NOTIFY_SOCKET=\(socketPath)"]
        return messages
    }

    func testReadyOnlyOnceTheRulesAreInAndStoppingOnTheWayOut() throws {
        var messages = ""
        func read() -> String { (try? String(contentsOfFile: messages, encoding: .utf8)) ?? "" }
        try Privileged.withAcmeEngine("notify", engineArguments: ["--log-format", "json"], beforeStart: { lab, engine, directory in
            messages = try Self.listenForNotifications(lab, engine, directory)
        }) { _, engine, _ in
            do {
                try NetworkLab.poll("READY=1 from the engine", timeout: 10) { read().contains("READY=1") }
                let ready = try XCTUnwrap(read().split(separator: "\n").first { $0.contains("READY=1") })
                XCTAssertTrue(ready.hasSuffix("rules=True"), "READY=1 came before the rules were in: \(ready)")
                XCTAssertTrue(ready.contains("STATUS=multiplexing 9000/tcp"), String(ready))
                // --log-format json: every line of the engine's log is one JSON object.
                let lines = engine.log.split(separator: "\n")
                XCTAssertFalse(lines.isEmpty)
                for line in lines {
                    let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
                    XCTAssertNotNil(object?["time"], String(line))
                    XCTAssertNotNil(object?["level"], String(line))
                }
                let running = lines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
                    .first { $0["msg"] as? String == "engine running" }
                XCTAssertEqual(running?["datapath"] as? String, Privileged.datapath, engine.log)
                XCTAssertEqual(engine.stop(), 0)
                try NetworkLab.poll("STOPPING=1 from the engine", timeout: 10) { read().contains("STOPPING=1") }
                XCTAssertEqual(read().split(separator: "\n").filter { $0.contains("READY=1") }.count, 1, read())
            } catch {
                XCTFail("messages:\n\(read())")
                throw error
            }
        }
    }

    /// `vpm reload` (the unit's ExecReload) and SIGHUP: new source rules apply to new
    /// connections at once while an upload that started under the old ones finishes intact
    /// (sha256); a file that does not load, or that changes what needs a restart, is refused
    /// and changes nothing; systemd hears RELOADING=1 and READY=1 again.
    func testReloadAppliesNewSourcesAndKeepsEstablishedConnections() throws {
        var messages = ""
        func read() -> String { (try? String(contentsOfFile: messages, encoding: .utf8)) ?? "" }
        try Privileged.withAcmeEngine("reload", beforeStart: { lab, engine, directory in
            messages = try Self.listenForNotifications(lab, engine, directory)
        }) { lab, engine, directory in
            let acmeClient = lab.clients[0], stranger = lab.clients[1]  // 198.18.1.2, 198.18.9.9
            // Refusals for their source (not for a missing listener), as the engine counts them
            // (published every 200 ms).
            func expectRefusals(_ count: UInt64, _ why: String) throws {
                try NetworkLab.poll("\(count) refusals for no AID: \(why)", timeout: 5) {
                    let answer = try? engine.stats(json: true).standardOutput
                    let statistics = answer.flatMap { try? JSONDecoder().decode(EngineStatistics.self, from: Data($0.utf8)) }
                    // The socket datapath's program refuses them itself, without the engine.
                    let reasons = Privileged.datapath == "socket" ? statistics?.reasonsInKernel : statistics?.reasons
                    return reasons?["noApplication"] == count
                }
            }
            func send(_ client: NetworkLab.Host, _ file: String) throws -> CommandOutput {
                try lab.run(client, ["socat", "-u", "OPEN:\(file)", "TCP:\(lab.server.address):9000,connect-timeout=5"], timeout: 30)
            }
            try NetworkLab.poll("READY=1 from the engine", timeout: 10) { read().contains("READY=1") }

            // An upload from acme's client that pauses half-way, across the reload.
            let upload = "\(directory)/upload", received = "\(directory)/received"
            try NetworkLab.makeRandomFile(upload, count: 4 << 20)
            let uploading = try lab.spawn(acmeClient, ["sh", "-c", "(head -c 2097152 \(upload); sleep 4; tail -c +2097153 \(upload)) | socat -u STDIN TCP:\(lab.server.address):9000"],
                                          log: "\(directory)/upload.log")
            try NetworkLab.poll("the first half of the upload", timeout: 15) {
                ((try? FileManager.default.attributesOfItem(atPath: received)[.size] as? Int) ?? 0) >= 2 << 20
            }
            XCTAssertNotEqual(try send(stranger, upload).status, 0, "198.18.9.9 belongs to no AID yet")
            try expectRefusals(1, "the stranger before the reload")

            // The stranger's address becomes acme's; acme's old network belongs to nobody.
            let moved = Privileged.acmeConfiguration.replacingOccurrences(of: "198.18.1.0/24", with: "198.18.9.9")
            try moved.write(toFile: engine.configurationPath, atomically: true, encoding: .utf8)
            let reload = try engine.reload()
            XCTAssertEqual(reload.status, 0, reload.standardError)
            XCTAssertTrue(reload.standardOutput.contains("sources changed"), reload.standardOutput)

            try NetworkLab.poll("the upload to finish", timeout: 30) { !uploading.isRunning }
            XCTAssertEqual(uploading.terminationStatus, 0, "the established upload kept going")
            try NetworkLab.poll("the upload to arrive whole", timeout: 10) {
                (try? NetworkLab.sha256(received)) == (try? NetworkLab.sha256(upload))
            }

            // New connections follow the new rules: acme's old client is refused by the engine,
            // the stranger reaches acme's instance.
            XCTAssertNotEqual(try send(acmeClient, upload).status, 0)
            try expectRefusals(2, "acme's old client after the reload")
            let second = "\(directory)/received-2"
            _ = try lab.spawn(lab.server, ["socat", "-u", "TCP-LISTEN:20017,reuseaddr", "CREATE:\(second)"], log: "\(directory)/instance-2.log")
            try lab.waitForListener(lab.server, port: 20017)
            XCTAssertEqual(try send(stranger, upload).status, 0)
            try NetworkLab.poll("the stranger's upload to arrive whole", timeout: 10) {
                (try? NetworkLab.sha256(second)) == (try? NetworkLab.sha256(upload))
            }

            // Refused reloads change nothing.
            try moved.replacingOccurrences(of: "ports: [9000]", with: "ports: [9000, 9001]")
                .write(toFile: engine.configurationPath, atomically: true, encoding: .utf8)
            var refused = try engine.reload()
            XCTAssertEqual(refused.status, 1)
            XCTAssertTrue(refused.standardError.contains("changes ports") && refused.standardError.contains("restart"), refused.standardError)
            try (moved + "sources: [oops\n").write(toFile: engine.configurationPath, atomically: true, encoding: .utf8)
            refused = try engine.reload()
            XCTAssertEqual(refused.status, 1)
            XCTAssertTrue(refused.standardError.contains("did not load, nothing changed"), refused.standardError)
            XCTAssertTrue(refused.standardError.contains("line"), refused.standardError)

            // SIGHUP: back to the first file; the stranger is refused again.
            try Privileged.acmeConfiguration.write(toFile: engine.configurationPath, atomically: true, encoding: .utf8)
            engine.signal(SIGHUP)
            try NetworkLab.poll("the SIGHUP reload in the log", timeout: 10) {
                engine.log.contains("configuration reloaded") && engine.log.contains("trigger=SIGHUP")
            }
            XCTAssertNotEqual(try send(stranger, upload).status, 0)
            try expectRefusals(3, "the stranger after SIGHUP")

            let lines = read().split(separator: "\n")
            XCTAssertEqual(lines.filter { $0.contains("RELOADING=1") }.count, 4, read())
            XCTAssertEqual(lines.filter { $0.contains("READY=1") }.count, 5, "once at start, once after each reload:\n\(read())")
            XCTAssertEqual(engine.stop(), 0)
        }
    }

    /// `--allow-exposed-keys`: the engine runs a configuration whose keys every user can
    /// read, and says so in its log; it multiplexes as usual.
    func testExposedKeysRunOnlyWhenInsistedUponAndWithAWarning() throws {
        let peer = "cooperative: {peers: [{network: 198.18.5.5, key: \(String(repeating: "cd", count: 32))}]}\n"
        try Privileged.withAcmeEngine("exposed", extraConfiguration: peer, engineArguments: ["--allow-exposed-keys"],
                                      beforeStart: { _, engine, _ in
            try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: engine.configurationPath)
        }) { lab, engine, directory in
            XCTAssertTrue(engine.log.contains("running with exposed keys"), engine.log)
            XCTAssertTrue(engine.log.contains("every user can read it"), engine.log)
            try Privileged.uploadToAcme(lab, directory: directory, megabytes: 1)
        }
    }
}
