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
    /// Whether an unconnected UDP socket's sendto() or sendmsg() to an initial port
    /// registers the socket like a connect() does: where UDP clients are routed by their
    /// AID (local mode, or cooperative peers, with a UDP initial port). Elsewhere neither is
    /// intercepted at all, so they cost nothing.
    public var registersUnconnectedSends = false
    /// How long a send's registration stands before the next send from that socket to that
    /// destination registers again: half the shortest UDP flow timeout, so a flow that
    /// expired is always met by a fresh registration.
    public var sendRegistrationMilliseconds: UInt64 = 15_000
    /// The AID is a tenant: the supervisor joins it before the program starts, so the
    /// tenant lives as long as anything the supervisor serves.
    public var joinsTenant = false

    public init(aid: AID, initialPorts: [InitialPort], socketPath: String, answerTimeoutSeconds: Int) {
        self.aid = aid
        self.initialPorts = initialPorts
        self.socketPath = socketPath
        self.answerTimeoutSeconds = answerTimeoutSeconds
    }

    /// The settings for an instance of `aid` under `configuration`.
    public init(aid: AID, configuration: Configuration, socketPath: String, answerTimeoutSeconds: Int) {
        self.init(aid: aid, initialPorts: configuration.initialPorts, socketPath: socketPath,
                  answerTimeoutSeconds: answerTimeoutSeconds)
        let cooperation = configuration.cooperation
        registersUnconnectedSends = (cooperation.local || !cooperation.peers.isEmpty)
            && configuration.initialPorts.contains { $0.transport == .udp }
        let timeouts = configuration.timeouts
        sendRegistrationMilliseconds = min(timeouts.udp, timeouts.udpStream) / 2
    }

    func isMultiplexed(_ port: UInt16, _ transport: TransportProtocol) -> Bool {
        initialPorts.contains { $0.port == port && $0.transport == transport }
    }
}
