public import Foundation
public import NetworkLab

/// This machine's own systemd booted as PID 1 in a container (systemd-nspawn) inside a lab
/// host's network namespace, so the unit files run under a real service manager while the
/// lab's clients reach the host as usual. How, and why this way: docs/operations.md.
///
/// - `--volatile=yes` over `/`: the host's /usr read-only, everything else a fresh tmpfs,
///   so nothing the container does outlives it. /etc is nearly empty, so the host's
///   alternatives (iptables), users and groups are bound in read-only, and the first-boot
///   wizard is off.
/// - It boots to `basic.target`: the host's services (installed for the tests: nginx,
///   redis, postgres, etcd) would otherwise start in it.
/// - The vpm under test is bound at /opt/vpm (with the Swift runtime a debug build links).
/// - Its root gets CAP_NET_ADMIN (the namespace is the lab's, not the host's), CAP_BPF and
///   the bpf() call for the socket datapath, and pidfd_getfd() for vpm exec: nspawn's own
///   system call filter refuses those two otherwise (a host's systemd has none). systemd
///   cannot mount bpffs on the container's read-only /sys, as it does on a host at boot:
///   `mountBPF()` does that part.
public final class SystemdContainer {
    public let name: String
    /// The container's PID 1 (systemd), as this host sees it.
    public let pid1: Int32
    private let nspawn: BackgroundProcess
    public let log: String
    /// The cgroups made for it, one per hierarchy nspawn uses: it puts its own
    /// `payload` and `supervisor` cgroups beside itself, and they go with these.
    private let cgroups: [String]

    public init(host: NetworkLab.Host, name: String, vpmExecutable: String, log: String,
                binds: [String] = []) throws {
        self.name = name
        self.log = log
        let directory = URL(fileURLWithPath: vpmExecutable).deletingLastPathComponent().path
        var arguments = ["systemd-nspawn", "--quiet", "--volatile=yes", "--register=no", "--keep-unit", "--boot", "--directory=/",
                         "--machine=\(name)", "--network-namespace-path=/var/run/netns/\(host.namespace)",
                         "--capability=CAP_NET_ADMIN,CAP_BPF,CAP_PERFMON", "--system-call-filter=bpf pidfd_getfd pidfd_open",
                         "--bind-ro=\(directory):/opt/vpm", "--bind-ro=/etc/alternatives", "--bind-ro=/etc/passwd",
                         "--bind-ro=/etc/group"]
        arguments += Self.runtimeDirectories(of: vpmExecutable).map { "--bind-ro=\($0)" }
        arguments += binds
        arguments += ["systemd.firstboot=off", "systemd.unit=basic.target"]
        // Started in cgroups of its own: nspawn makes its cgroups next to its own, which
        // would otherwise be the host's root cgroup.
        let hierarchies = FileManager.default.fileExists(atPath: "/sys/fs/cgroup/cgroup.controllers")
            ? ["/sys/fs/cgroup"] : ["/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified"].filter { FileManager.default.fileExists(atPath: "\($0)/cgroup.procs") }
        cgroups = hierarchies.map { "\($0)/\(name)" }
        for cgroup in cgroups { try FileManager.default.createDirectory(atPath: cgroup, withIntermediateDirectories: true) }
        let enter = cgroups.map { "echo $$ > \($0)/cgroup.procs && " }.joined()
        nspawn = try BackgroundProcess(["sh", "-c", enter + "exec \"$@\"", "sh"] + arguments, log: log)
        var found: Int32 = 0
        let deadline = Date().addingTimeInterval(30)
        while found == 0 || !Self.booted(found) {
            guard nspawn.isRunning else {
                Self.removeCgroups(cgroups)
                throw CommandError.failed("systemd-nspawn", nspawn.terminationStatus, (try? String(contentsOfFile: log, encoding: .utf8)) ?? "")
            }
            guard Date() < deadline else {
                kill(nspawn.processIdentifier, SIGKILL)
                if found > 0 { kill(found, SIGKILL) }
                nspawn.waitUntilExit()
                Self.removeCgroups(cgroups)
                throw CommandError.failed("systemd-nspawn", -1, "the container's systemd did not finish booting in 30 s: \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
            }
            if found == 0 {
                let children = (try? String(contentsOfFile: "/proc/\(nspawn.processIdentifier)/task/\(nspawn.processIdentifier)/children",
                                            encoding: .utf8)) ?? ""
                found = Int32(children.split(separator: " ").first ?? "") ?? 0
            }
            usleep(100_000)
        }
        pid1 = found
    }

    private static func booted(_ pid: Int32) -> Bool {
        let state = (try? Command.run(["nsenter", "-t", "\(pid)", "-a", "systemctl", "is-system-running"], timeout: 10))?.standardOutput ?? ""
        return state.hasPrefix("running") || state.hasPrefix("degraded")
    }

    /// Shared libraries the binary loads from outside /usr (a debug build's Swift runtime).
    private static func runtimeDirectories(of executable: String) -> [String] {
        let listing = (try? Command.run(["ldd", executable], timeout: 30))?.standardOutput ?? ""
        let directories = listing.split(separator: "\n").compactMap { line -> String? in
            guard let arrow = line.range(of: "=> /") else { return nil }
            let path = line[line.index(before: arrow.upperBound)...].split(separator: " ").first.map(String.init) ?? ""
            let directory = URL(fileURLWithPath: path).deletingLastPathComponent().path
            return directory.hasPrefix("/usr/") || directory.hasPrefix("/lib") ? nil : directory
        }
        return Array(Set(directories)).sorted()
    }

    /// Runs a command inside the container (all its namespaces), with a time limit.
    @discardableResult
    public func run(_ arguments: [String], timeout: TimeInterval = 60) throws -> CommandOutput {
        try Command.run(["nsenter", "-t", "\(pid1)", "-a"] + arguments, timeout: timeout)
    }

    /// Like `run`, but throws when the command fails.
    @discardableResult
    public func checked(_ arguments: [String], timeout: TimeInterval = 60) throws -> CommandOutput {
        let output = try run(arguments, timeout: timeout)
        guard output.status == 0 else {
            throw CommandError.failed(arguments.joined(separator: " "), output.status, output.standardError + output.standardOutput)
        }
        return output
    }

    /// `systemctl ARGUMENTS` inside; throws with the unit's status and journal on failure.
    @discardableResult
    public func systemctl(_ arguments: String..., timeout: TimeInterval = 90) throws -> CommandOutput {
        let output = try run(["systemctl"] + arguments, timeout: timeout)
        guard output.status == 0 else {
            let unit = arguments.last ?? ""
            let journal = (try? run(["journalctl", "--no-pager", "-n", "40", "-u", unit]))?.standardOutput ?? ""
            throw CommandError.failed("systemctl \(arguments.joined(separator: " "))", output.status,
                                      output.standardError + "\njournal of \(unit):\n" + journal)
        }
        return output
    }

    /// Writes a file inside the container (its /etc is its own tmpfs), making its folder.
    public func write(_ content: String, to path: String, mode: Int = 0o644) throws {
        let outside = "/proc/\(pid1)/root\(path)"
        try FileManager.default.createDirectory(atPath: URL(fileURLWithPath: outside).deletingLastPathComponent().path,
                                                withIntermediateDirectories: true)
        try content.write(toFile: outside, atomically: false, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: outside)
    }

    /// The bpf filesystem on /sys/fs/bpf, as systemd mounts it at boot on a host.
    public func mountBPF() throws {
        try Command.checked(["nsenter", "-t", "\(pid1)", "-m", "mount", "-t", "bpf", "bpf", "/sys/fs/bpf"])
    }

    /// Powers the container off (systemd stops every unit), or kills it after 20 s.
    public func stop() {
        guard nspawn.isRunning else { return Self.removeCgroups(cgroups) }
        _ = try? run(["systemctl", "poweroff", "--no-block"], timeout: 10)
        let deadline = Date().addingTimeInterval(20)
        while nspawn.isRunning && Date() < deadline { usleep(100_000) }
        if nspawn.isRunning {
            kill(nspawn.processIdentifier, SIGKILL)
            kill(pid1, SIGKILL)
            nspawn.waitUntilExit()
        }
        Self.removeCgroups(cgroups)
    }

    /// Removes the container's cgroups, deepest first, once their processes are gone.
    private static func removeCgroups(_ cgroups: [String]) {
        for cgroup in cgroups {
            for _ in 0..<50 {
                _ = try? Command.run(["find", cgroup, "-depth", "-type", "d", "-exec", "rmdir", "{}", ";"], timeout: 10)
                if !FileManager.default.fileExists(atPath: cgroup) { break }
                usleep(100_000)
            }
        }
    }

    deinit { stop() }
}
