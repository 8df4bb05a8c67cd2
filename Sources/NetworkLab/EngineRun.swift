public import Foundation

/// `vpm run` on the lab's server host with a configuration, a private control socket and a
/// log file in `directory`; `vpm flows`/`vpm stats` against it. Used by `vpm demo` and the
/// privileged end-to-end tests.
public final class EngineRun: @unchecked Sendable {
    public let lab: NetworkLab
    public let vpmExecutable: String
    public let directory: String
    /// The lab host the engine runs on.
    public let host: NetworkLab.Host
    public var configurationPath: String { "\(directory)/vpm.yaml" }
    public var socketPath: String { "\(directory)/vpm.sock" }
    public var logPath: String { "\(directory)/engine.log" }
    private var process: BackgroundProcess?
    /// `--datapath` for `vpm run`; nil: the engine's default.
    public var datapath: String?
    /// Extra environment for `vpm run` (`NAME=value`), e.g. systemd's NOTIFY_SOCKET.
    public var environment: [String] = []

    public init(lab: NetworkLab, vpmExecutable: String, directory: String, configuration: String,
                host: NetworkLab.Host? = nil) throws {
        self.lab = lab
        self.host = host ?? lab.server
        self.vpmExecutable = vpmExecutable
        self.directory = directory
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try configuration.write(toFile: configurationPath, atomically: true, encoding: .utf8)
        // As an operator keeps it: `vpm run` refuses cooperative keys other users can read;
        // without keys it stays readable, for unprivileged `vpm exec` (docs/security.md).
        try FileManager.default.setAttributes([.posixPermissions: configuration.contains("key:") ? 0o600 : 0o644],
                                              ofItemAtPath: configurationPath)
    }

    /// Starts the engine and waits until it says it is running (the log file starts afresh).
    public func start(_ extraArguments: [String] = []) throws {
        let chosen = datapath.map { ["--datapath", $0] } ?? []
        let prefix = environment.isEmpty ? [] : ["env"] + environment
        let command = prefix + [vpmExecutable, "run", "--config", configurationPath, "--socket", socketPath] + chosen + extraArguments
        // The socket datapath (the default) pins its program in /sys/fs/bpf: the engine enters
        // the host's network namespace only (nsenter), not `ip netns exec`'s own /sys, so the
        // pins outlive it as they do under systemd, and the next engine takes them over.
        process = datapath == "socket" || datapath == nil ? try lab.spawnSharingMounts(host, command, log: logPath)
            : try lab.spawn(host, command, log: logPath)
        do {
            try NetworkLab.poll("the engine to start (see \(logPath))", timeout: 15) {
                log.contains("engine running") || !(process?.isRunning ?? false)
            }
        }
        guard process?.isRunning ?? false else {
            throw CommandError.failed("vpm run", process?.terminationStatus ?? -1, log)
        }
        // A datapath asked for must be the one running: a silent fallback would test the other.
        if let datapath, !log.contains("datapath=\(datapath)"), !log.contains("\"datapath\":\"\(datapath)\"") {
            _ = stop()
            throw CommandError.failed("vpm run --datapath \(datapath) runs another datapath", -1, log)
        }
    }

    /// SIGKILL: the engine dies without removing anything (a crash, an OOM kill).
    public func kill() {
        guard let process, process.isRunning else { return }
        Foundation.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// Sends `number` (SIGHUP: reload) to the running engine.
    public func signal(_ number: Int32) {
        guard let process, process.isRunning else { return }
        Foundation.kill(process.processIdentifier, number)
    }

    /// `vpm reload` against this engine; its status and output, failing or not.
    public func reload() throws -> CommandOutput {
        try Command.run([vpmExecutable, "reload", "--socket", socketPath])
    }

    /// SIGTERM, and waits for the engine to remove its rules and exit.
    public func stop() -> Int32? {
        guard let process else { return nil }
        lab.stop(process, grace: 10)
        return process.terminationStatus
    }

    public var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// `vpm flows` (or `vpm flows --json`) against this engine, from the host namespace:
    /// the control socket is a file, reachable from any namespace.
    public func flows(json: Bool = false, _ arguments: [String] = []) throws -> CommandOutput {
        try Command.checked([vpmExecutable, "flows", "--socket", socketPath] + (json ? ["--json"] : []) + arguments)
    }

    public func apps(json: Bool = false) throws -> CommandOutput {
        try Command.checked([vpmExecutable, "apps", "--socket", socketPath] + (json ? ["--json"] : []))
    }

    /// `vpm exec --aid AID -- arguments` on this engine's host, against this engine.
    public func exec(_ aid: String, _ arguments: [String], log: String) throws -> BackgroundProcess {
        try lab.spawn(host, [vpmExecutable, "exec", "--aid", aid, "--config", configurationPath, "--socket", socketPath, "--"]
                      + arguments, log: "\(directory)/\(log)")
    }

    /// The same, waiting for the program to finish.
    public func execAndWait(_ aid: String, _ arguments: [String], timeout: TimeInterval = 60) throws -> CommandOutput {
        try lab.run(host, [vpmExecutable, "exec", "--aid", aid, "--config", configurationPath, "--socket", socketPath, "--"]
                    + arguments, timeout: timeout)
    }

    /// `vpm exec --new-aid -- arguments` (a fresh tenant) on this engine's host, against
    /// this engine; `user`: a command that runs the rest as another user (setpriv ...).
    public func execNewTenant(_ arguments: [String], user: [String] = [], log: String) throws -> BackgroundProcess {
        try lab.spawn(host, user + [vpmExecutable, "exec", "--new-aid", "--config", configurationPath, "--socket", socketPath, "--"]
                      + arguments, log: "\(directory)/\(log)")
    }

    public func stats(json: Bool = false) throws -> CommandOutput {
        try Command.checked([vpmExecutable, "stats", "--socket", socketPath] + (json ? ["--json"] : []))
    }
}
