public import Foundation
@_exported public import HostCommand

/// Throwaway hosts, each in its own network namespace, on 198.18.0.0/15 (RFC 2544
/// benchmarking space, never routed). With one client: `client` and `server` joined by a
/// veth pair on 198.18.0.0/24. With several: each client's veth ends on a bridge in the
/// server host, all on 198.18.0.0/16, the server at 198.18.0.1 — so the clients can have
/// addresses from different /24s and still dial one server address.
///
/// Every host is dual-stack: it also has the IPv6 address `NetworkLab.ipv6(address)` from
/// 2001:db8::/32 (RFC 3849 documentation space), so 198.18.1.2 is also 2001:db8:0:1::2 and
/// the /24s above are /64s (the /16 a /48). Addresses are added without duplicate address
/// detection, so they are usable at once.
///
/// The demo and the privileged tests use it. Everything it makes carries its `name` as a
/// prefix and is removed by `tearDown()` — also from `deinit`, and `removeStale(prefix:)`
/// sweeps what a killed run left behind.
public final class NetworkLab: @unchecked Sendable {
    public struct Host: Sendable, Hashable {
        public let namespace: String
        public let interface: String
        /// The IPv4 address.
        public let address: String
        /// The IPv6 address: `NetworkLab.ipv6(address)`.
        public var address6: String { NetworkLab.ipv6(address) }
        /// The address of `family`.
        public func address(_ family: AddressFamily) -> String { family == .ipv4 ? address : address6 }
    }

    public enum AddressFamily: String, Sendable, CaseIterable {
        case ipv4, ipv6

        /// The family of an address written as text.
        public init(of address: String) { self = address.contains(":") ? .ipv6 : .ipv4 }
    }

    /// The IPv6 twin of a lab address or prefix: 198.(18+h).A.B → 2001:db8:h:A::B, as the
    /// kernel writes it (2001:db8::1 for 198.18.0.1); a /16 prefix becomes a /48, a /24 a
    /// /64, an address (or /32) a /128.
    public static func ipv6(_ ipv4: String) -> String {
        let parts = ipv4.split(separator: "/", maxSplits: 1)
        let octets = parts[0].split(separator: ".").compactMap { UInt8($0) }
        let length = parts.count == 2 ? Int(parts[1]) ?? -1 : 32
        guard octets.count == 4, octets[0] == 198, (18...19).contains(octets[1]), let sixLength = [16: 48, 24: 64, 32: 128][length]
        else { preconditionFailure("\(ipv4) is not a lab address or /16, /24 prefix in 198.18.0.0/15") }
        var bytes: [UInt8] = [0x20, 0x01, 0x0d, 0xb8, 0, octets[1] - 18, 0, length >= 24 ? octets[2] : 0]
        bytes += Array(repeating: 0, count: 7) + [length == 32 ? octets[3] : 0]
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        _ = inet_ntop(AF_INET6, bytes, &text, socklen_t(text.count))
        let address = String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return parts.count == 2 ? "\(address)/\(sixLength)" : address
    }

    /// `[address]:port` for IPv6, `address:port` for IPv4: how socat and vpm write them.
    public static func endpoint(_ address: String, _ port: UInt16) -> String {
        address.contains(":") ? "[\(address)]:\(port)" : "\(address):\(port)"
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
                try Command.checked(["ip", "-n", host.namespace, "addr", "add", "\(host.address6)/\(bridged ? 48 : 64)",
                                     "dev", host.interface, "nodad"])
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

    /// Like `spawn`, but only in `host`'s network namespace (nsenter): the command shares this
    /// process's mounts, /sys included, where `ip netns exec` gives it a /sys of its own.
    public func spawnSharingMounts(_ host: Host, _ arguments: [String], log: String) throws -> BackgroundProcess {
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let process = try BackgroundProcess(["nsenter", "--net=/var/run/netns/\(host.namespace)", "--"] + arguments, log: log)
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
