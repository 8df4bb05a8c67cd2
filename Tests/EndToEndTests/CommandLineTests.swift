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

    func testCheckConfigAcceptsTheExample() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("vpm-good-\(getpid()).yaml").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try run(["demo", "--print-config"]).standardOutput.write(toFile: path, atomically: true, encoding: .utf8)
        let output = try run(["check-config", path])
        XCTAssertEqual(output.status, 0, output.standardError)
        XCTAssertTrue(output.standardOutput.contains("ok"), output.standardOutput)
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
