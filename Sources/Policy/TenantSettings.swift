/// Tenants on demand (`tenants:`; docs/configuration.md, docs/instances.md): `vpm exec
/// --new-aid` makes a fresh AID for one process tree, which lives until the last process
/// of every `vpm exec` that joined it has exited. Who may make them, how many may exist at
/// once, and which initial ports their instances and clients use are stated here.
/// Tenants reach their instances through local mode, so `tenants:` needs `cooperative:
/// {local: true}`.
public struct TenantSettings: Sendable, Equatable {
    /// Users (names or numeric uids) who may make tenants; root always may.
    public var users: [String]
    /// Groups (names or numeric gids) whose members may make tenants.
    public var groups: [String]
    /// How many tenants may exist at once.
    public var limit: Int
    /// The initial ports tenants' instances bind and their clients reach (default: every
    /// multiplexed port).
    public var ports: [InitialPort]
    /// A tenant's AID is this prefix, a dash and eight hex digits (`tenant-3f9a02c1`).
    public var prefix: String

    public static let defaultLimit = 16
    public static let defaultPrefix = "tenant"

    public init(users: [String] = [], groups: [String] = [], limit: Int = defaultLimit, ports: [InitialPort], prefix: String = defaultPrefix) {
        self.users = users
        self.groups = groups
        self.limit = limit
        self.ports = ports
        self.prefix = prefix
    }

    /// Why `caller` may not make a tenant, naming the rule; nil when it may.
    public func makingRefusal(for caller: Caller) -> String? {
        if caller.uid == 0 || users.contains(where: caller.isUser) || groups.contains(where: caller.isInGroup) { return nil }
        let users = self.users.isEmpty ? "no users" : "users [\(self.users.joined(separator: ", "))]"
        let groups = self.groups.isEmpty ? "no groups" : "groups [\(self.groups.joined(separator: ", "))]"
        return "permission denied: \(caller.description) may not make tenants (tenants: allows \(users) and \(groups)); an operator can add the user to tenants.users or tenants.groups"
    }
}
