/// What the engine needs back from `FlowTable.update` for one packet.
public struct FlowUpdate: Sendable, Equatable, Hashable {
    /// The port to rewrite the initial port to (ingress) or from (egress).
    public var virtualPort: UInt16
    /// The flow's state after the packet.
    public var state: FlowState
    /// The flow's state before the packet.
    public var previousState: FlowState
    /// How the flow was decided: a cooperative flow crosses the wire on its virtual port,
    /// so the server side does not rewrite it.
    public var mode: FlowMode

    public init(virtualPort: UInt16, state: FlowState, previousState: FlowState, mode: FlowMode = .source) {
        self.virtualPort = virtualPort
        self.state = state
        self.previousState = previousState
        self.mode = mode
    }

    /// The packet moved the flow to another state (worth an event line).
    public var stateChanged: Bool { state != previousState }
}
