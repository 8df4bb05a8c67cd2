/// The server's counters. Every connection that does not end in an ACK or a NAK is
/// counted under exactly one rejection, except an unknown peer, which is counted both
/// as `forged` and as `unknownPeer`.
public struct NegotiationStatistics: Sendable, Equatable, Codable {
    /// ACKs sent.
    public var accepted: UInt64 = 0
    /// NAKs sent.
    public var refused: UInt64 = 0
    /// Overlong, truncated, timed out (no complete line within the read timeout), bad
    /// framing, bad base64, bad JSON, a missing or mistyped field, wrong type or version.
    public var malformed: UInt64 = 0
    /// MAC mismatch, or no key for the peer's address.
    public var forged: UInt64 = 0
    /// No key for the peer's address (also counted in `forged`).
    public var unknownPeer: UInt64 = 0
    /// Timestamp more than `NegotiationMessage.timestampTolerance` away from our clock.
    public var stale: UInt64 = 0
    /// Nonce seen within `NegotiationMessage.replayWindow`, or not provably fresh after
    /// the nonce cache overflowed.
    public var replayed: UInt64 = 0
    /// Nonces pushed out of a full cache before their replay window ended.
    public var nonceCacheEvictions: UInt64 = 0

    public init() {}

    public init(accepted: UInt64 = 0, refused: UInt64 = 0, malformed: UInt64 = 0, forged: UInt64 = 0,
                unknownPeer: UInt64 = 0, stale: UInt64 = 0, replayed: UInt64 = 0, nonceCacheEvictions: UInt64 = 0) {
        self.accepted = accepted
        self.refused = refused
        self.malformed = malformed
        self.forged = forged
        self.unknownPeer = unknownPeer
        self.stale = stale
        self.replayed = replayed
        self.nonceCacheEvictions = nonceCacheEvictions
    }
}

/// The client's counters. `sent` = `answered` + `timedOut` + `unreachable` + `badAnswer`
/// + the negotiations still in flight.
public struct NegotiationClientStatistics: Sendable, Equatable, Codable {
    /// Negotiations started.
    public var sent: UInt64 = 0
    /// Valid ACKs and NAKs received (`accepted` + `refused`).
    public var answered: UInt64 = 0
    public var accepted: UInt64 = 0
    public var refused: UInt64 = 0
    /// No answer within the timeout (connect included).
    public var timedOut: UInt64 = 0
    /// The connection could not be made (refused, no route, ...).
    public var unreachable: UInt64 = 0
    /// The peer closed without a line, or its line did not verify (MAC, framing,
    /// version, type, inReplyTo, timestamp). Also a negotiation cut short by `stop()`.
    public var badAnswer: UInt64 = 0

    public init() {}
}
