public import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A command started in the background with its output in a log file (servers, engines and
/// clients of `vpm demo` and the tests). Its exit is found with waitpid, like `Command`'s:
/// Foundation's `Process` could miss it when the command's own children outlived it.
public final class BackgroundProcess: Sendable {
    public let processIdentifier: pid_t
    /// nil while running; the exit status (128 + N when killed by signal N) once reaped.
    private let status = Mutex<Int32?>(nil)

    /// Starts `arguments` (looked up on PATH), stdin from /dev/null, stdout and stderr
    /// appended to `log`, which is created if missing.
    public init(_ arguments: [String], log: String) throws {
        precondition(!arguments.isEmpty, "a command needs at least its name")
        let descriptor = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else {
            throw CommandError.failed("open \(log)", errno, String(cString: strerror(errno)))
        }
        defer { close(descriptor) }
        do {
            processIdentifier = try Command.spawn(arguments, output: descriptor, error: descriptor)
        } catch let failure as Command.SpawnFailure {
            throw CommandError.failed(arguments.joined(separator: " "), 127, failure.message(arguments[0]))
        }
    }

    /// Whether it has not exited yet (reaps it when it has).
    public var isRunning: Bool {
        status.withLock { status in
            if status == nil { status = Command.exitStatus(processIdentifier) }
            return status == nil
        }
    }

    /// The exit status; only meaningful once `isRunning` is false.
    public var terminationStatus: Int32 {
        status.withLock { $0 } ?? -1
    }

    /// Sends SIGTERM.
    public func terminate() {
        if isRunning { kill(processIdentifier, SIGTERM) }
    }

    /// Waits until it has exited.
    public func waitUntilExit() {
        while isRunning { usleep(5_000) }
    }
}
