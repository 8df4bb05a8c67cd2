import CInterceptionShim
import Control
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// `vpm exec`'s supervisor: starts the program with a seccomp filter that hands its bind(),
/// connect() and getsockname() calls (and, where UDP clients are routed by AID, sendto()
/// calls naming a destination and sendmsg() calls) to the supervisor process (SECCOMP_RET_USER_NOTIF),
/// which answers them. The calling process (the front) forwards signals and returns the
/// program's exit status as soon as the program's first process has exited; the supervisor
/// serves whatever that process left running (a daemon) until it has exited too. The filter is inherited by every child and
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
        // Under a systemd Type=notify unit the program's sd_notify messages go to the front,
        // the unit's main process, which passes them on as its own.
        var environment = environment
        var relay: Int32 = -1
        let notifySocket = environment["NOTIFY_SOCKET"].flatMap { $0.isEmpty || vpm_notify_target_valid($0) == 0 ? nil : $0 }
        if notifySocket != nil {
            var name = [CChar](repeating: 0, count: 108)
            relay = vpm_notify_relay_open(&name, name.count)
            if relay < 0 {
                // The program then sends to systemd itself, which takes it only with NotifyAccess=all.
                FileHandle.standardError.write(Data("vpm: cannot relay the program's sd_notify messages (\(String(cString: strerror(errno)))): it sends them to NOTIFY_SOCKET itself; set NotifyAccess=all in the unit\n".utf8))
            }
            if relay >= 0 {
                environment["NOTIFY_SOCKET"] = String(cString: name)
                // It names vpm exec; without it, sd_watchdog_enabled() in the program finds
                // the watchdog meant for it, and its WATCHDOG=1 goes out through the front.
                environment["WATCHDOG_PID"] = nil
            }
        }
        // Split while this process has one thread: the supervisor goes on in Swift after fork.
        let threads = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task").count) ?? 1
        guard threads == 1 else {
            throw InterceptionError("vpm exec cannot start the supervisor: \(threads) threads run before it forks, where one must (a bug: please report it)")
        }
        var channel: Int32 = -1
        let supervisor = vpm_split_front(&channel)
        guard supervisor >= 0 else {
            throw InterceptionError("cannot start the supervisor for \(path): fork failed: \(String(cString: strerror(errno)))")
        }
        if supervisor > 0 {
            return (notifySocket ?? "").withCString { target in
                vpm_front_wait(supervisor, channel, relay, notifySocket == nil ? nil : target,
                               forwardedSignals, Int32(forwardedSignals.count))
            }
        }
        // The supervisor keeps the relay's name taken once the front has gone (`detach`).
        let status = try supervise(path: path, arguments: arguments, environment: environment, settings: settings,
                                   channel: channel, relay: relay)
        exit(status)
    }

    /// The supervisor: starts the program, answers its calls and its descendants', reports
    /// the program's status to the front, and returns once nobody it supervises is left.
    private static func supervise(path: String, arguments: [String], environment: [String: String],
                                  settings: InterceptionSettings, channel: Int32, relay: Int32) throws -> Int32 {
        // Orphans (a daemon's double fork) stay our children: they keep their supervisor,
        // and this process stays their ancestor, which pidfd_getfd's ptrace check accepts.
        _ = vpm_become_subreaper()
        if settings.joinsTenant {
            // The front holds the tenant until it exits; the supervisor, which outlives a
            // daemon's first process, holds it too, and speaks for it.
            var request = ControlRequest(.tenant)
            request.aid = settings.aid.name
            let response: ControlResponse
            do { response = try ControlSocket.send(request, to: settings.socketPath, timeoutSeconds: 5) } catch {
                throw InterceptionError("cannot join tenant \(settings.aid): \(error)")
            }
            guard response.aid == settings.aid.name else {
                throw InterceptionError("cannot join tenant \(settings.aid): \(response.error ?? "the engine gave no AID")")
            }
        }
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
        return waitForEveryone(child: child, channel: channel, relay: relay)
    }

    /// Waits for the program and reports its status to the front, which exits with it; then
    /// serves what the program left running (reparented to us) until it has exited too.
    private static func waitForEveryone(child: pid_t, channel: Int32, relay: Int32) -> Int32 {
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
            // What remains (a daemon) runs on its own now, as it would without vpm: signals
            // for the caller no longer reach it (nor a pid the kernel may reuse), nor end its
            // supervisor. Then the front may go.
            _ = vpm_supervisor_detach(forwardedSignals, Int32(forwardedSignals.count))
            _ = vpm_supervisor_report(channel, result)
            if relay >= 0 {
                // Once the front has passed on the last messages and gone (we are reparented).
                let front = getppid()
                let discard = Thread {
                    while getppid() == front { usleep(10_000) }
                    vpm_notify_relay_discard(relay)
                }
                discard.name = "vpm-exec-notify"
                discard.start()
            }
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
