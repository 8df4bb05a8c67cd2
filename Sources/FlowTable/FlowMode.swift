/// Which of the three modes (ARCHITECTURE.md §3) admitted a flow.
public enum FlowMode: String, Sendable, Codable, CaseIterable {
    /// Source-routed: the client source mapped to an AID by policy.
    case source
    /// Cooperative: negotiated with the peer engine over the control channel.
    case cooperative
    /// Local: client and instance on this host, matched by AID.
    case local
}
