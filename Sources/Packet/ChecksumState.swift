/// What the transport checksum field holds when the packet reaches the engine.
public enum ChecksumState: Sendable, Equatable {
    /// The field holds a complete checksum, so an incremental update (RFC 1624) keeps it right.
    case complete
    /// The kernel flagged NFQA_SKB_CSUMNOTREADY: the field holds only the pseudo-header sum,
    /// so the checksum has to be computed in full.
    case partial
}
