import Foundation
import HostCommand
import XCTest

/// Command against real programs: sh, printf, sleep (no root needed).
final class CommandTests: XCTestCase {
    func testOutputErrorAndStatusAreKeptApart() throws {
        let output = try Command.run(["sh", "-c", "printf 'out\\n'; printf 'err\\n' >&2; exit 3"])
        XCTAssertEqual(output.status, 3)
        XCTAssertEqual(output.standardOutput, "out\n")
        XCTAssertEqual(output.standardError, "err\n")
    }

    /// More than a pipe holds (64 KiB) on both streams at once: read while it runs.
    func testLargeOutputOnBothStreams() throws {
        let output = try Command.run(["sh", "-c", "head -c 300000 /dev/zero | tr '\\0' a; head -c 200000 /dev/zero | tr '\\0' b >&2"])
        XCTAssertEqual(output.status, 0)
        XCTAssertEqual(output.standardOutput.utf8.count, 300_000)
        XCTAssertEqual(output.standardError.utf8.count, 200_000)
        XCTAssertTrue(output.standardOutput.allSatisfy { $0 == "a" })
    }

    func testStandardInputIsEmpty() throws {
        XCTAssertEqual(try Command.run(["sh", "-c", "wc -c"]).standardOutput.trimmingCharacters(in: .whitespaces), "0\n")
    }

    func testAMissingProgramIsStatus127WithTheReason() throws {
        let output = try Command.run(["vpm-no-such-program"])
        XCTAssertEqual(output.status, 127)
        XCTAssertEqual(output.standardError, "cannot run vpm-no-such-program: No such file or directory\n")
        XCTAssertThrowsError(try Command.checked(["vpm-no-such-program"])) { error in
            XCTAssertTrue("\(error)".contains("exited with 127"), "\(error)")
        }
    }

    /// A command that leaves a process behind holding its output: run returns when the
    /// command exits (with a 30 s timeout, waiting for the pipe's end would throw instead).
    func testReturnsWhenTheCommandExitsThoughABackgroundChildHoldsItsOutput() throws {
        let output = try Command.run(["sh", "-c", "sleep 60 & echo $!"], timeout: 30)
        XCTAssertEqual(output.status, 0)
        let background = try XCTUnwrap(Int32(output.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)))
        XCTAssertEqual(kill(background, SIGKILL), 0, "the background sleep was still running")
    }

    func testATimeoutKillsTheCommandAndSaysSo() {
        XCTAssertThrowsError(try Command.run(["sleep", "60"], timeout: 0.2)) { error in
            XCTAssertEqual("\(error)", "`sleep 60` did not finish within 0 s")
        }
    }

    func testAKilledCommandReportsTheSignal() throws {
        XCTAssertEqual(try Command.run(["sh", "-c", "kill -TERM $$"]).status, 128 + SIGTERM)
    }

    /// Many short commands from several threads at once, as tests and the engine's control
    /// plane run them: every one is seen to exit, with its own output.
    func testManyConcurrentCommandsAllFinish() {
        let count = 64
        let lock = NSLock()
        nonisolated(unsafe) var collected = Array(repeating: "", count: count)
        DispatchQueue.concurrentPerform(iterations: count) { index in
            let text: String
            do { text = try Command.run(["sh", "-c", "echo \(index)"], timeout: 30).standardOutput } catch { text = "\(error)" }
            lock.withLock { collected[index] = text }
        }
        XCTAssertEqual(collected, (0..<count).map { "\($0)\n" })
    }
}
