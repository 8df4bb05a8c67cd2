import Foundation
import NetworkLab
import TestSupport
import XCTest

/// The CLI as a user meets it, without root: bad input gets a clear message and exit code.
final class CommandLineTests: XCTestCase {
    func run(_ arguments: [String]) throws -> CommandOutput {
        try Command.run([try Privileged.vpmExecutable()] + arguments)
    }

    func testCheckConfigPointsAtTheLine() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("vpm-bad-\(getpid()).yaml").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try """
            virtual-ports: 20000-20999
            ports: [9000]
            applications:
              acme: {instances: {9000: 20017}}
            sources:
              - {from: 198.18.1.0/24, aid: acme}
              - {from: 198.18.1.7, aid: nobody}
            """.write(toFile: path, atomically: true, encoding: .utf8)
        let output = try run(["check-config", path])
        XCTAssertEqual(output.status, 1)
        XCTAssertTrue(output.standardError.hasPrefix("vpm: \(path):7:"), output.standardError)
        XCTAssertTrue(output.standardError.contains("nobody"), output.standardError)
    }

    /// A user who is not root is told that, and only that: no fallback between datapaths
    /// that all need the same privilege.
    func testRunWithoutPrivilegesSaysSoFirst() throws {
        try Privileged.requireRoot()  // to become a user who is not
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("vpm-unprivileged-\(getpid()).yaml").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try run(["demo", "--print-config"]).standardOutput.write(toFile: path, atomically: true, encoding: .utf8)
        let output = try Command.run(["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", try Privileged.vpmExecutable(),
                                      "run", "--config", path, "--socket", "/tmp/vpm-unprivileged-\(getpid()).sock"], timeout: 30)
        XCTAssertEqual(output.status, 1)
        XCTAssertEqual(output.standardError, "vpm: vpm run needs root, or CAP_NET_ADMIN (for its rules, queues and maps): run it with sudo, or start the service (sudo systemctl start vpm)\n")
    }

    /// `vpm demo` as a new user runs it: it passes, and the engine's log lines it shows read
    /// message first, then the fields.
    func testTheDemoPassesAndShowsLogLinesMessageFirst() throws {
        try Privileged.requireRoot()
        let output = try run(["demo"])
        XCTAssertEqual(output.status, 0, output.standardOutput + output.standardError)
        XCTAssertTrue(output.standardOutput.contains("vpm demo passed"), output.standardOutput)
        let logs = output.standardOutput.split(separator: "\n").filter { $0.hasPrefix("  log: ") }
        XCTAssertFalse(logs.isEmpty, output.standardOutput)
        for line in logs {
            XCTAssertTrue(line.hasPrefix("  log: cooperative connection refused client="), String(line))
        }
    }

    func testCheckConfigAcceptsTheExample() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("vpm-good-\(getpid()).yaml").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try run(["demo", "--print-config"]).standardOutput.write(toFile: path, atomically: true, encoding: .utf8)
        let output = try run(["check-config", path])
        XCTAssertEqual(output.status, 0, output.standardError)
        XCTAssertTrue(output.standardOutput.contains("ok"), output.standardOutput)
    }

    /// A configuration piped in (/dev/stdin) is read like a file.
    func testCheckConfigReadsAPipe() throws {
        let vpm = try Privileged.vpmExecutable()
        let output = try Command.run(["sh", "-c", "\"$0\" demo --print-config | \"$0\" check-config /dev/stdin", vpm])
        XCTAssertEqual(output.status, 0, output.standardError)
        XCTAssertTrue(output.standardOutput.contains("/dev/stdin: ok"), output.standardOutput)
    }

    /// A file with cooperative keys that every user can read: `vpm run` stops before
    /// anything with the chmod to run; `check-config` passes it with a warning saying so.
    func testKeysOtherUsersCanReadStopTheStartAndCheckConfigWarns() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("vpm-keys-\(getpid()).yaml").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try run(["demo", "--print-config"]).standardOutput.write(toFile: path, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: path)
        let started = try run(["run", "--config", path, "--socket", path + ".sock"])
        XCTAssertEqual(started.status, 1)
        XCTAssertTrue(started.standardError.contains("every user can read it (mode 644): chmod 600 \(path)"), started.standardError)
        XCTAssertFalse(FileManager.default.fileExists(atPath: path + ".sock"), "stopped before anything")
        let checked = try run(["check-config", path])
        XCTAssertEqual(checked.status, 0)
        XCTAssertTrue(checked.standardError.contains("warning: vpm run will refuse it"), checked.standardError)
        let json = try run(["check-config", "--json", path])
        let report = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(json.standardOutput.utf8)) as? [String: Any])
        XCTAssertEqual((report["warnings"] as? [String])?.count, 1, json.standardOutput)
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: path)
        XCTAssertEqual(try run(["check-config", path]).standardError, "")
    }

    /// Scripts read `check-config --json`: the verdict and, for a bad file, where and why.
    func testCheckConfigJSON() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("vpm-json-\(getpid()).yaml").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try "virtual-ports: 20000-20999\nports: [9000, 5353/udp]\nmetrics: {listen: \"[::1]:9464\"}\n"
            .write(toFile: path, atomically: true, encoding: .utf8)
        let good = try run(["check-config", "--json", path])
        XCTAssertEqual(good.status, 0, good.standardError)
        let report = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(good.standardOutput.utf8)) as? [String: Any])
        XCTAssertEqual(report["ok"] as? Bool, true)
        XCTAssertEqual(report["ports"] as? [String], ["9000/tcp", "5353/udp"])
        XCTAssertEqual(report["metrics"] as? String, "http://[::1]:9464/metrics")

        try "virtual-ports: 20000-20999\nports: [9000]\nmetrics: {listen: 127.0.0.1}\n".write(toFile: path, atomically: true, encoding: .utf8)
        let bad = try run(["check-config", "--json", path])
        XCTAssertEqual(bad.status, 1)
        let problem = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(bad.standardOutput.utf8)) as? [String: Any])
        XCTAssertEqual(problem["ok"] as? Bool, false)
        let error = try XCTUnwrap(problem["error"] as? [String: Any])
        XCTAssertEqual(error["line"] as? Int, 3)
        XCTAssertTrue((error["message"] as? String ?? "").contains("needs a port"), "\(error)")
    }

    /// docs/cli.md is the commands' own help, regenerated here: a help text changed without
    /// the page (or the other way round) fails.
    func testCLIReferenceIsCurrent() throws {
        let root = Privileged.packageRoot.path
        let generated = try Command.checked(["\(root)/scripts/cli-reference.sh", try Privileged.vpmExecutable()]).standardOutput
        let page = try String(contentsOfFile: "\(root)/docs/cli.md", encoding: .utf8)
        XCTAssertTrue(generated == page, "docs/cli.md is stale: run `scripts/cli-reference.sh > docs/cli.md`")
        XCTAssertTrue(page.contains("## vpm flows"), "every subcommand has its section")
    }

    func testVersion() throws {
        let output = try run(["--version"])
        XCTAssertEqual(output.status, 0)
        XCTAssertNotNil(output.standardOutput.range(of: #"^\d+\.\d+\.\d+\n$"#, options: .regularExpression), output.standardOutput)
    }

    func testMissingConfigFileSaysWhich() throws {
        let output = try run(["run", "--config", "/nonexistent/vpm.yaml"])
        XCTAssertEqual(output.status, 1)
        XCTAssertTrue(output.standardError.contains("/nonexistent/vpm.yaml"), output.standardError)
    }

    func testFlowsWithoutEngineSaysWhatToDo() throws {
        let output = try run(["flows", "--socket", "/nonexistent/vpm.sock"])
        XCTAssertEqual(output.status, 1)
        XCTAssertTrue(output.standardError.contains("is `vpm run` running?"), output.standardError)
    }

    func testUsageErrorExitsTwo() throws {
        let output = try run(["translate", "--initial-port", "9000", "--virtual-port", "9000"])
        XCTAssertEqual(output.status, 2, output.standardError)
    }
}
