import Foundation
import NetworkLab

/// A real three-member etcd cluster (Debian's etcd-server), one member per lab host, with
/// authentication on: `root` may do anything, the user `vpm` may read and write the fleet's
/// prefix only. Members can be stopped and started again with their data.
public final class EtcdCluster {
    public let lab: NetworkLab
    public let hosts: [NetworkLab.Host]
    public let directory: String
    public static let password = "fleet-test-password"
    public static let rootPassword = "fleet-test-root"
    private var members: [BackgroundProcess?]

    public init(lab: NetworkLab, hosts: [NetworkLab.Host], directory: String, prefix: String = "/vpm") throws {
        self.lab = lab
        self.hosts = hosts
        self.directory = directory
        members = Array(repeating: nil, count: hosts.count)
        for index in hosts.indices { try start(index, state: "new") }
        try NetworkLab.poll("the etcd cluster to elect a leader", timeout: 30) {
            (try? ctl(["endpoint", "health", "--cluster"], authenticated: false).status) == 0
        }
        for command in [["user", "add", "root", "--new-user-password", Self.rootPassword],
                        ["role", "add", "vpm"],
                        ["role", "grant-permission", "vpm", "--prefix=true", "readwrite", prefix + "/"],
                        ["user", "add", "vpm", "--new-user-password", Self.password],
                        ["user", "grant-role", "vpm", "vpm"],
                        ["auth", "enable"]] {
            let output = try ctl(command, authenticated: false)
            guard output.status == 0 else {
                throw CommandError.failed("etcdctl " + command.joined(separator: " "), output.status, output.standardError + output.standardOutput)
            }
        }
    }

    public var endpoints: [String] { hosts.map { "http://\($0.address):2379" } }

    /// Starts member `index` ("new" the first time, "existing" after a stop: it keeps its data).
    public func start(_ index: Int, state: String = "existing") throws {
        let host = hosts[index]
        let cluster = hosts.enumerated().map { "m\($0.offset)=http://\($0.element.address):2380" }.joined(separator: ",")
        members[index] = try lab.spawn(host, [
            "etcd", "--name", "m\(index)", "--data-dir", "\(directory)/etcd-m\(index)",
            "--listen-client-urls", "http://\(host.address):2379", "--advertise-client-urls", "http://\(host.address):2379",
            "--listen-peer-urls", "http://\(host.address):2380", "--initial-advertise-peer-urls", "http://\(host.address):2380",
            "--initial-cluster", cluster, "--initial-cluster-state", state, "--initial-cluster-token", lab.name,
        ], log: "\(directory)/etcd-m\(index).log")
    }

    public func stop(_ index: Int) {
        if let member = members[index] { lab.stop(member) }
        members[index] = nil
    }

    /// etcdctl against every member, as root (or as nobody), from the first member's host.
    public func ctl(_ arguments: [String], authenticated: Bool = true, user: String? = nil) throws -> CommandOutput {
        let credentials = user.map { ["--user", $0] } ?? (authenticated ? ["--user", "root:\(Self.rootPassword)"] : [])
        return try lab.run(hosts[0], ["env", "ETCDCTL_API=3", "etcdctl", "--endpoints", endpoints.joined(separator: ",")]
                           + credentials + arguments, timeout: 30)
    }

    public var logs: String {
        hosts.indices.map { "etcd member \($0):\n" + ((try? String(contentsOfFile: "\(directory)/etcd-m\($0).log", encoding: .utf8))?.suffix(3000) ?? "") }
            .joined(separator: "\n")
    }
}
