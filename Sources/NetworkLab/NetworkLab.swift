public import Foundation

/// Two throwaway hosts, `client` and `server`, each in its own network namespace, joined
/// by a veth pair on 198.18.0.0/24 (RFC 2544 benchmarking space, never routed).
///
/// The demo and the privileged tests use it. Everything it makes carries its `name` as a
/// prefix and is removed by `tearDown()` — also from `deinit`, and `removeStale(prefix:)`
/// sweeps what a killed run left behind.
public final class NetworkLab: @unchecked Sendable {
    public struct Host: Sendable, Hashable {
        public let namespace: String
        public let interface: String
        public let address: String
    }

    public let name: String
    public let client: Host
    public let server: Host
    private var processes: [Process] = []
    private let lock = NSLock()
    private var tornDown = false

    /// Creates the namespaces and the link. Fails (after removing what it made) when the
    /// caller lacks the privileges or `ip` is missing.
    public init(name: String) throws {
        self.name = name
        client = Host(namespace: "\(name)-c", interface: "veth-c", address: "198.18.0.2")
        server = Host(namespace: "\(name)-s", interface: "veth-s", address: "198.18.0.1")
        Self.removeStale(prefix: name)
        do {
            for host in [client, server] {
                try Command.checked(["ip", "netns", "add", host.namespace])
                try Command.checked(["ip", "-n", host.namespace, "link", "set", "lo", "up"])
            }
            try Command.checked(["ip", "-n", client.namespace, "link", "add", client.interface, "type", "veth",
                              "peer", "name", server.interface, "netns", server.namespace])
            for host in [client, server] {
                try Command.checked(["ip", "-n", host.namespace, "addr", "add", "\(host.address)/24", "dev", host.interface])
                try Command.checked(["ip", "-n", host.namespace, "link", "set", host.interface, "up"])
            }
        } catch {
            tearDown()
            throw error
        }
    }

    deinit { tearDown() }

    /// Runs a command inside `host` and waits for it, with a time limit.
    @discardableResult
    public func run(_ host: Host, _ arguments: [String], timeout: TimeInterval = 120) throws -> CommandOutput {
        try Command.run(["ip", "netns", "exec", host.namespace] + arguments, timeout: timeout)
    }

    /// Like `run`, but throws when the command fails.
    @discardableResult
    public func checked(_ host: Host, _ arguments: [String], timeout: TimeInterval = 120) throws -> CommandOutput {
        let output = try run(host, arguments, timeout: timeout)
        guard output.status == 0 else {
            throw LabError.commandFailed(arguments.joined(separator: " "), output.status, output.standardError)
        }
        return output
    }

    /// Starts a background command inside `host`; `tearDown()` stops it.
    /// Its output goes to `log` (a file path), so a failing test can show it.
    public func spawn(_ host: Host, _ arguments: [String], log: String) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["ip", "netns", "exec", host.namespace] + arguments
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        try process.run()
        lock.withLock { processes.append(process) }
        return process
    }

    /// Sends SIGTERM, then SIGKILL after `grace` seconds, and waits for the process.
    public func stop(_ process: Process, grace: TimeInterval = 5) {
        guard process.isRunning else { return }
        process.terminate()
        let deadline = Date().addingTimeInterval(grace)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    /// Stops every spawned process and deletes both namespaces (which removes the veth
    /// pair and every rule installed inside them). Safe to call more than once.
    public func tearDown() {
        let running: [Process] = lock.withLock {
            if tornDown { return [] }
            tornDown = true
            defer { processes = [] }
            return processes
        }
        for process in running { stop(process, grace: 2) }
        Self.removeStale(prefix: name)
    }

    /// Deletes namespaces whose names start with `prefix` (what an interrupted run left).
    public static func removeStale(prefix: String) {
        guard let listing = try? Command.run(["ip", "netns", "list"], timeout: 10) else { return }
        for line in listing.standardOutput.split(separator: "\n") {
            let namespace = String(line.split(separator: " ").first ?? "")
            guard namespace.hasPrefix(prefix) else { continue }
            // Processes left inside would keep the namespace's interfaces alive.
            _ = try? Command.run(["ip", "netns", "pids", namespace], timeout: 10).standardOutput
                .split(separator: "\n").compactMap { Int32($0) }.map { kill($0, SIGKILL) }
            _ = try? Command.run(["ip", "netns", "delete", namespace], timeout: 10)
        }
    }
}

public enum LabError: Error, CustomStringConvertible {
    case commandFailed(String, Int32, String)
    case timedOut(String, TimeInterval)

    public var description: String {
        switch self {
        case .commandFailed(let command, let status, let error):
            return "`\(command)` exited with \(status): \(error.trimmingCharacters(in: .whitespacesAndNewlines))"
        case .timedOut(let command, let seconds):
            return "`\(command)` did not finish within \(Int(seconds)) s"
        }
    }
}
