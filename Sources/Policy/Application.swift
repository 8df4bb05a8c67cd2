/// Everything the configuration says about one AID.
public struct Application: Sendable {
    public var aid: AID
    /// At most one per initial port.
    public var instances: [Instance]
    /// Absolute paths of executables whose processes get this AID.
    public var executables: [String]

    public init(aid: AID, instances: [Instance] = [], executables: [String] = []) {
        self.aid = aid
        self.instances = instances
        self.executables = executables
    }

    public func instance(initialPort: InitialPort) -> Instance? {
        instances.first { $0.initialPort == initialPort }
    }
}
