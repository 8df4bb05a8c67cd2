public import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What a finished command printed and how it exited.
public struct CommandOutput: Sendable {
    /// The exit status; 128 + N for a command killed by signal N; 127 when it could not be started.
    public var status: Int32
    public var standardOutput: String
    public var standardError: String
}

/// Runs control-plane commands (ip, iptables, nft, socat): never on the packet path.
///
/// With posix_spawn and waitpid rather than Foundation's `Process`: on Linux that learns of a
/// child's exit through a socket the child inherits, and under load it sometimes never did —
/// `vpm rules install` was seen waiting forever on an `nft` that had long exited (a zombie).
public enum Command {
    /// Runs a command to completion, killing it after `timeout` seconds. The command is looked
    /// up on PATH; its standard input is /dev/null. Returns once the command has exited, even
    /// if a process it started in the background still holds its output open.
    public static func run(_ arguments: [String], timeout: TimeInterval = 30) throws -> CommandOutput {
        precondition(!arguments.isEmpty, "a command needs at least its name")
        let output = try Pipe(), error = try Pipe()
        defer { output.close(); error.close() }
        let pid: pid_t
        do {
            pid = try spawn(arguments, output: output.writing, error: error.writing)
        } catch let failure as SpawnFailure {
            return CommandOutput(status: 127, standardOutput: "", standardError: failure.message(arguments[0]) + "\n")
        }
        output.closeWriting()
        error.closeWriting()

        let deadline = Date().addingTimeInterval(timeout)
        var outputData = Collected(descriptor: output.reading), errorData = Collected(descriptor: error.reading)
        var status: Int32?
        var timedOut = false
        while status == nil {
            let remaining = deadline.timeIntervalSinceNow
            if remaining <= 0 && !timedOut {
                timedOut = true
                kill(pid, SIGKILL)
            }
            // Wake at least every 50 ms to look for the exit: the pipes may stay open after it
            // (a background child holds them). Once both have ended, the command is exiting:
            // look again after 1 ms.
            let ended = outputData.ended && errorData.ended
            let wait = ended ? 1 : timedOut ? 50 : Int32(min(50, max(1, remaining * 1000)))
            drain(&outputData, &errorData, waitMilliseconds: wait)
            status = exitStatus(pid)
        }
        // Whatever the command wrote before it exited is in the pipes now.
        drain(&outputData, &errorData, waitMilliseconds: 0)
        if timedOut { throw CommandError.timedOut(arguments.joined(separator: " "), timeout) }
        return CommandOutput(status: status ?? 0,
                             standardOutput: String(decoding: outputData.bytes, as: UTF8.self),
                             standardError: String(decoding: errorData.bytes, as: UTF8.self))
    }

    /// Like `run`, but throws when the command exits non-zero.
    @discardableResult
    public static func checked(_ arguments: [String], timeout: TimeInterval = 30) throws -> CommandOutput {
        let output = try run(arguments, timeout: timeout)
        guard output.status == 0 else {
            throw CommandError.failed(arguments.joined(separator: " "), output.status, output.standardError)
        }
        return output
    }

    /// Whether an executable is on PATH.
    public static func exists(_ name: String) -> Bool {
        (try? run(["sh", "-c", "command -v \(name)"], timeout: 5).status) == 0
    }

    // MARK: - Processes and pipes

    /// posix_spawnp's error: the program is missing, not executable, ...
    struct SpawnFailure: Error {
        var code: Int32
        func message(_ program: String) -> String { "cannot run \(program): \(String(cString: strerror(code)))" }
    }

    /// A pipe; the child gets the write end as stdout or stderr.
    private final class Pipe {
        private(set) var reading: Int32
        private(set) var writing: Int32

        init() throws {
            var ends: [Int32] = [-1, -1]
            guard pipe(&ends) == 0 else {
                throw CommandError.failed("pipe", errno, String(cString: strerror(errno)))
            }
            reading = ends[0]
            writing = ends[1]
            // Close-on-exec, so no other command inherits them (Glibc has no pipe2 for Swift);
            // nonblocking, so reading stops when a pipe is empty. Completion never waits for
            // EOF, so an end another thread's child inherited meanwhile cannot hang anyone.
            for end in ends { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
            _ = fcntl(reading, F_SETFL, fcntl(reading, F_GETFL) | O_NONBLOCK)
        }

        func closeWriting() {
            if writing >= 0 { Glibc.close(writing) }
            writing = -1
        }

        func close() {
            closeWriting()
            if reading >= 0 { Glibc.close(reading) }
            reading = -1
        }
    }

    /// Starts `arguments` (looked up on PATH) with stdin from /dev/null, stdout and stderr on
    /// the given descriptors, and default dispositions for the signals vpm handles or ignores.
    static func spawn(_ arguments: [String], output: Int32, error: Int32) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, output, 1)
        posix_spawn_file_actions_adddup2(&actions, error, 2)

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var defaults = sigset_t(), empty = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGPIPE, SIGINT, SIGTERM, SIGCHLD, SIGHUP] { sigaddset(&defaults, signal) }
        sigemptyset(&empty)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setsigmask(&attributes, &empty)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))

        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { for argument in argv { free(argument) } }
        var pid: pid_t = 0
        let result = posix_spawnp(&pid, arguments[0], &actions, &attributes, &argv, environ)
        guard result == 0 else { throw SpawnFailure(code: result) }
        return pid
    }

    /// What a command wrote to one pipe so far, and whether the pipe reached its end.
    private struct Collected {
        var descriptor: Int32
        var bytes: [UInt8] = []
        var ended = false
    }

    /// Reads what the two pipes hold, waiting up to `waitMilliseconds` for the first bytes
    /// (just sleeping once both have ended, so a command that closed its output early is not
    /// polled in a busy loop).
    private static func drain(_ output: inout Collected, _ error: inout Collected, waitMilliseconds: Int32) {
        var descriptors = [pollfd(fd: output.ended ? -1 : output.descriptor, events: Int16(POLLIN), revents: 0),
                           pollfd(fd: error.ended ? -1 : error.descriptor, events: Int16(POLLIN), revents: 0)]
        guard poll(&descriptors, 2, waitMilliseconds) > 0 else { return }
        readAvailable(&output)
        readAvailable(&error)
    }

    private static func readAvailable(_ collected: inout Collected) {
        guard !collected.ended else { return }
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = read(collected.descriptor, &chunk, chunk.count)
            if count > 0 { collected.bytes.append(contentsOf: chunk[0..<count]); continue }
            if count < 0 && errno == EINTR { continue }
            if count == 0 { collected.ended = true }
            return  // the end, or nothing more for now (EAGAIN)
        }
    }

    /// The exit status once `pid` has exited (reaping it), else nil.
    static func exitStatus(_ pid: pid_t) -> Int32? {
        var status: Int32 = 0
        while true {
            let result = waitpid(pid, &status, WNOHANG)
            if result == 0 { return nil }
            if result < 0 {
                if errno == EINTR { continue }
                return 127  // not our child any more (ECHILD): nothing left to wait for
            }
            let signal = status & 0x7f
            return signal == 0 ? (status >> 8) & 0xff : 128 + signal
        }
    }
}

public enum CommandError: Error, CustomStringConvertible {
    case failed(String, Int32, String)
    case timedOut(String, TimeInterval)

    public var description: String {
        switch self {
        case .failed(let command, let status, let error):
            return "`\(command)` exited with \(status): \(error.trimmingCharacters(in: .whitespacesAndNewlines))"
        case .timedOut(let command, let seconds):
            return "`\(command)` did not finish within \(Int(seconds)) s"
        }
    }
}
