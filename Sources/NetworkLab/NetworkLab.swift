public import Foundation
@_exported public import HostCommand

/// Throwaway hosts, each in its own network namespace, on 198.18.0.0/15 (RFC 2544
/// benchmarking space, never routed). With one client: `client` and `server` joined by a
/// veth pair on 198.18.0.0/24. With several: each client's veth ends on a bridge in the
/// server host, all on 198.18.0.0/16, the server at 198.18.0.1 — so the clients can have
/// addresses from different /24s and still dial one server address.
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
    public let clients: [Host]
    public let server: Host
    /// The first client.
    public var client: Host { clients[0] }
    private var processes: [BackgroundProcess] = []
    private let lock = NSLock()
    private var tornDown = false

    /// Creates the namespaces and the link. Fails (after removing what it made) when the
    /// caller lacks the privileges or `ip` is missing.
    public init(name: String, clientAddresses: [String] = ["198.18.0.2"]) throws {
        precondition(!clientAddresses.isEmpty, "a lab needs a client")
        self.name = name
        let bridged = clientAddresses.count > 1
        clients = clientAddresses.enumerated().map { index, address in
            Host(namespace: index == 0 ? "\(name)-c" : "\(name)-c\(index)", interface: "veth-c", address: address)
        }
        server = Host(namespace: "\(name)-s", interface: bridged ? "br0" : "veth-s", address: "198.18.0.1")
        let prefixLength = bridged ? 16 : 24
        Self.removeStale(prefix: name)
        do {
            for host in clients + [server] {
                try Command.checked(["ip", "netns", "add", host.namespace])
                try Command.checked(["ip", "-n", host.namespace, "link", "set", "lo", "up"])
            }
            if bridged {
                try Command.checked(["ip", "-n", server.namespace, "link", "add", "br0", "type", "bridge"])
            }
            for (index, client) in clients.enumerated() {
                let serverEnd = bridged ? "veth-s\(index)" : server.interface
                try Command.checked(["ip", "-n", client.namespace, "link", "add", client.interface, "type", "veth",
                                     "peer", "name", serverEnd, "netns", server.namespace])
                if bridged {
                    try Command.checked(["ip", "-n", server.namespace, "link", "set", serverEnd, "master", "br0"])
                    try Command.checked(["ip", "-n", server.namespace, "link", "set", serverEnd, "up"])
                }
            }
            for host in clients + [server] {
                try Command.checked(["ip", "-n", host.namespace, "addr", "add", "\(host.address)/\(prefixLength)",
                                     "dev", host.interface])
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
            throw CommandError.failed(arguments.joined(separator: " "), output.status, output.standardError)
        }
        return output
    }

    /// Starts a background command inside `host`; `tearDown()` stops it.
    /// Its output goes to `log` (a file path), so a failing test can show it.
    public func spawn(_ host: Host, _ arguments: [String], log: String) throws -> BackgroundProcess {
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let process = try BackgroundProcess(["ip", "netns", "exec", host.namespace] + arguments, log: log)
        lock.withLock { processes.append(process) }
        return process
    }

    /// Sends SIGTERM, then SIGKILL after `grace` seconds, and waits for the process.
    public func stop(_ process: BackgroundProcess, grace: TimeInterval = 5) {
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
        let running: [BackgroundProcess] = lock.withLock {
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
