public import FlowTable
/// Who may use the engine's control socket, and for what (docs/security.md).
///
/// - root and the engine's own user: everything;
/// - members of `group`: connect at all (the socket is mode 0660, owned by that group) and
///   read: `vpm flows`, `vpm stats`, `vpm apps`;
/// - registering an instance of an AID (`vpm exec`'s bind) or a client connection of an
///   AID (its connect): only the users and groups that AID's `users:` and `groups:` name.
/// Anyone else cannot connect (without `group`, the socket is 0600).
public struct ControlAccess: Sendable, Equatable {
    /// A group name or a numeric gid.
    public var group: String?

    public init(group: String? = nil) { self.group = group }

    public static let rootOnly = ControlAccess()
}

extension Configuration {
    /// Nil when `caller` may read the flow table, counters and instances; else why not.
    public func readRefusal(for caller: Caller) -> String? {
        if caller.uid == 0 { return nil }
        guard let group = control.group else {
            return "permission denied: \(caller.description) may not use the control socket (only root may: set control: {group: NAME} to open reading to a group)"
        }
        guard caller.isInGroup(group) else {
            return "permission denied: \(caller.description) is not in the control group \(group)"
        }
        return nil
    }

    /// Nil when `caller` may run instances of `aid` (and register its clients' connections);
    /// else why not, naming the AID and the rule.
    public func registrationRefusal(aid: AID, for caller: Caller) -> String? {
        if caller.uid == 0 { return nil }
        guard let application = application(aid) else { return nil }  // the caller of this says "unknown AID"
        if application.users.contains(where: caller.isUser) || application.groups.contains(where: caller.isInGroup) {
            return nil
        }
        let users = application.users.isEmpty ? "no users" : "users [\(application.users.joined(separator: ", "))]"
        let groups = application.groups.isEmpty ? "no groups" : "groups [\(application.groups.joined(separator: ", "))]"
        return "permission denied: \(caller.description) may not run instances of AID \(aid) (applications.\(aid) allows \(users) and \(groups)); an operator can add the user to its users: or groups:"
    }
}
