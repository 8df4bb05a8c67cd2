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

    func testReadyOnlyOnceTheRulesAreInAndStoppingOnTheWayOut() throws {
        var messages = ""
        func read() -> String { (try? String(contentsOfFile: messages, encoding: .utf8)) ?? "" }
        try Privileged.withAcmeEngine("notify", engineArguments: ["--log-format", "json"], beforeStart: { lab, engine, directory in
            try Self.receiver.write(toFile: "\(directory)/receiver.py", atomically: true, encoding: .utf8)
            let socketPath = "\(directory)/notify.sock"
            messages = "\(directory)/notify.log"
            _ = try lab.spawn(lab.server, ["python3", "\(directory)/receiver.py", socketPath, lab.server.namespace, messages],
                              log: "\(directory)/receiver.log")
            try NetworkLab.poll("the notify receiver to listen", timeout: 10) { read().contains("listening") }
            engine.environment = ["NOTIFY_SOCKET=\(socketPath)"]
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
}
