import Foundation
import HostCommand
import XCTest

final class BackgroundProcessTests: XCTestCase {
    private var log: String!

    override func setUp() {
        log = FileManager.default.temporaryDirectory.appendingPathComponent("vpm-background-\(getpid())-\(name.hashValue).log").path
    }

    override func tearDown() {
        try? FileManager.default.removeItem(atPath: log)
    }

    /// Its exit is seen although a child it left behind still runs (and holds the log).
    func testExitIsSeenWhileItsChildLivesOn() throws {
        let process = try BackgroundProcess(["sh", "-c", "sleep 60 & echo $!"], log: log)
        process.waitUntilExit()
        XCTAssertFalse(process.isRunning)
        XCTAssertEqual(process.terminationStatus, 0)
        let child = try XCTUnwrap(Int32(try String(contentsOfFile: log, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))
        XCTAssertEqual(kill(child, SIGKILL), 0, "the child was still running")
    }

    func testTerminateEndsItWithSIGTERM() throws {
        let process = try BackgroundProcess(["sleep", "60"], log: log)
        XCTAssertTrue(process.isRunning)
        process.terminate()
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 128 + SIGTERM)
    }

    func testOutputAndErrorGoToTheLog() throws {
        let process = try BackgroundProcess(["sh", "-c", "echo out; echo err >&2; exit 4"], log: log)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 4)
        XCTAssertEqual(try String(contentsOfFile: log, encoding: .utf8), "out\nerr\n")
    }

    func testAMissingProgramIsAnError() {
        XCTAssertThrowsError(try BackgroundProcess(["vpm-no-such-program"], log: log)) { error in
            XCTAssertTrue("\(error)".contains("cannot run vpm-no-such-program: No such file or directory"), "\(error)")
        }
    }
}
