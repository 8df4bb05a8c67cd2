public import FlowTable
/// Everything the configuration says about one AID.
public struct Application: Sendable, Equatable {
    public var aid: AID
    /// At most one per initial port.
    public var instances: [Instance]
    /// Absolute paths of executables whose processes get this AID.
    public var executables: [String]
    /// Users (names or numeric uids) who may run instances of this AID; root always may.
    public var users: [String]
    /// Groups (names or numeric gids) whose members may run instances of this AID.
    public var groups: [String]

    public init(aid: AID, instances: [Instance] = [], executables: [String] = [], users: [String] = [], groups: [String] = []) {
        self.aid = aid
        self.instances = instances
        self.executables = executables
        self.users = users
        self.groups = groups
    }

    public func instance(initialPort: InitialPort) -> Instance? {
        instances.first { $0.initialPort == initialPort }
    }
}
