/// Why the server closed a connection without answering. Each is a counter in
/// `NegotiationStatistics`.
public enum NegotiationRejection: String, Sendable, Equatable, CaseIterable {
    case malformed
    case forged
    /// No key for the peer's address; counted as `forged` too.
    case unknownPeer
    case stale
    case replayed
}
