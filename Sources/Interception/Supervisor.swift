import CInterceptionShim
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// `vpm exec`'s supervisor: starts the program with a seccomp filter that hands its bind(),
/// connect() and getsockname() calls (and, where UDP clients are routed by AID, sendto()
/// calls naming a destination and sendmsg() calls) to this process (SECCOMP_RET_USER_NOTIF), answers
/// them, forwards signals to the program, and returns its exit status once the program and
/// every process it left behind have exited. The filter is inherited by every child and
/// survives execve, so forked workers, re-executed binaries and helper programs are all
/// intercepted, whatever language or libc they use, linked dynamically or statically.
public enum Supervisor {
    /// Runs `arguments` (the program at `path`) under interception; returns the exit status
    /// for `vpm exec` to exit with (128 + N when a signal N ended the program).
    public static func run(path: String, arguments: [String], environment: [String: String],
                           settings: InterceptionSettings) throws -> Int32 {
        guard vpm_interception_available() == 0 else {
            throw InterceptionError("this kernel cannot hand a program's sockets to a supervisor (pidfd_getfd, Linux 5.6 or later: \(String(cString: strerror(errno)))): vpm exec needs it")
        }
        // Orphans (a daemon's double fork) stay our children: they keep their supervisor,
        // and this process stays their ancestor, which pidfd_getfd's ptrace check accepts.
        _ = vpm_become_subreaper()
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for pointer in argv + envp { free(pointer) } }
        var listener: Int32 = -1
        var stage: UnsafePointer<CChar>?
        let child = vpm_spawn_intercepted(path, argv, envp, settings.registersUnconnectedSends ? 1 : 0, &listener, &stage)
        guard child > 0 else {
            let code = errno
            let step = stage.map { String(cString: $0) } ?? "fork"
            throw InterceptionError(Self.explain(step: step, code: code, path: path))
        }
        // Where the kernel has it (6.6+), each intercepted call switches to this process and
        // back on one CPU instead of waking it elsewhere (measured in docs/instances.md).
        _ = vpm_notification_synchronous(listener)
        _ = vpm_forward_signals(child, forwardedSignals, Int32(forwardedSignals.count))

        let handler = NotificationHandler(listener: listener, settings: settings)
        let loop = NotificationLoop(listener: listener, handler: handler)
        loop.start()
        return waitForEveryone(child: child)
    }

    /// Waits for the program, then for what it left behind (reparented to us); the
    /// program's own status is the answer.
    private static func waitForEveryone(child: pid_t) -> Int32 {
        var result: Int32 = 1
        while true {
            var status: Int32 = 0
            let pid = waitpid(-1, &status, 0)
            if pid < 0 {
                if errno == EINTR { continue }
                break  // ECHILD: nobody left
            }
            guard pid == child else { continue }
            result = (status & 0x7F) == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
            // What remains (daemonized processes) is not signalled on our behalf any more:
            // the signals stop the supervisor, as they would any process.
            _ = vpm_forward_signals(0, forwardedSignals, Int32(forwardedSignals.count))
        }
        return result
    }

    private static func explain(step: String, code: Int32, path: String) -> String {
        let reason = String(cString: strerror(code))
        switch (step, code) {
        case ("execve", _):
            return "cannot run \(path): \(reason)"
        case ("seccomp", EINVAL), ("seccomp", ENOSYS):
            return "this kernel cannot hand system calls to a supervisor (seccomp user notification, Linux 5.6 or later; \(reason)): vpm exec needs it"
        case ("seccomp", EBUSY):
            return "cannot install the interception filter: the program already runs under a seccomp listener (is it already under vpm exec, or in a container that uses one?)"
        default:
            return "cannot start \(path) under interception: \(step) failed: \(reason)"
        }
    }
}

private let forwardedSignals: [Int32] = [SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGWINCH, SIGCONT]

/// Receives notifications on a thread of its own, blocked in SECCOMP_IOCTL_NOTIF_RECV (no
/// poll in between: with synchronous wake-ups the kernel switches straight to it). It ends
/// with the process: `vpm exec` exits once no process under the filter is left.
private final class NotificationLoop: Sendable {
    private let listener: Int32
    private let handler: NotificationHandler

    init(listener: Int32, handler: NotificationHandler) {
        self.listener = listener
        self.handler = handler
    }

    func start() {
        let thread = Thread { [self] in run() }
        thread.name = "vpm-exec-notifications"
        thread.start()
    }

    private func run() {
        while true {
            var notification = seccomp_notif()
            guard vpm_notification_receive(listener, &notification) == 0 else {
                if errno == ENOENT || errno == EINTR { continue }  // the caller died meanwhile
                return
            }
            handler.handle(notification)
        }
    }
}
