/// What the CLI asks the engine over the control socket: one JSON object per line.
public struct ControlRequest: Codable, Sendable, Equatable {
    public enum Command: String, Codable, Sendable { case flows, stats }
    public var command: Command

    public init(_ command: Command) { self.command = command }
}

/// The engine's answer: one JSON object per line, then the engine closes the connection.
public struct ControlResponse: Codable, Sendable, Equatable {
    public var flows: [FlowRecord]?
    public var statistics: EngineStatistics?
    public var error: String?

    public init(flows: [FlowRecord]? = nil, statistics: EngineStatistics? = nil, error: String? = nil) {
        self.flows = flows
        self.statistics = statistics
        self.error = error
    }
}
