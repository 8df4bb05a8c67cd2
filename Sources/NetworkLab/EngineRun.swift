import Foundation

/// `vpm run` on the lab's server host with a configuration, a private control socket and a
/// log file in `directory`; `vpm flows`/`vpm stats` against it. Used by `vpm demo` and the
/// privileged end-to-end tests.
public final class EngineRun: @unchecked Sendable {
    public let lab: NetworkLab
    public let vpmExecutable: String
    public let directory: String
    public var configurationPath: String { "\(directory)/vpm.yaml" }
    public var socketPath: String { "\(directory)/vpm.sock" }
    public var logPath: String { "\(directory)/engine.log" }
    private var process: Process?

    public init(lab: NetworkLab, vpmExecutable: String, directory: String, configuration: String) throws {
        self.lab = lab
        self.vpmExecutable = vpmExecutable
        self.directory = directory
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try configuration.write(toFile: configurationPath, atomically: true, encoding: .utf8)
    }

    /// Starts the engine and waits until it says it is running.
    public func start(_ extraArguments: [String] = []) throws {
        process = try lab.spawn(lab.server, [vpmExecutable, "run", "--config", configurationPath,
                                             "--socket", socketPath] + extraArguments, log: logPath)
        do {
            try NetworkLab.poll("the engine to start (see \(logPath))", timeout: 15) {
                log.contains("engine running") || !(process?.isRunning ?? false)
            }
        }
        guard process?.isRunning ?? false else {
            throw CommandError.failed("vpm run", process?.terminationStatus ?? -1, log)
        }
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

    public func stats(json: Bool = false) throws -> CommandOutput {
        try Command.checked([vpmExecutable, "stats", "--socket", socketPath] + (json ? ["--json"] : []))
    }
}
