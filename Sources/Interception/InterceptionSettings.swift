import Packet
public import Policy

/// What `vpm exec`'s supervisor needs to know: whose instance it runs, which ports are
/// multiplexed, and where the engine answers.
public struct InterceptionSettings: Sendable {
    public var aid: AID
    public var initialPorts: [InitialPort]
    public var socketPath: String
    /// How long a bind waits for the engine's answer (a bind may wait for a free port).
    public var answerTimeoutSeconds: Int
    /// One line on standard error per interception (`VPM_DEBUG=1`).
    public var debug = false

    public init(aid: AID, initialPorts: [InitialPort], socketPath: String, answerTimeoutSeconds: Int) {
        self.aid = aid
        self.initialPorts = initialPorts
        self.socketPath = socketPath
        self.answerTimeoutSeconds = answerTimeoutSeconds
    }

    func isMultiplexed(_ port: UInt16, _ transport: TransportProtocol) -> Bool {
        initialPorts.contains { $0.port == port && $0.transport == transport }
    }
}
