/// The outcome of one negotiation.
///
/// On the server the handler returns `.accepted` (sent as ACK) or `.refused` (sent as
/// NAK); a `.failed` returned by a handler is sent as a NAK too. On the client,
/// `.failed` means no valid answer arrived: timeout, peer unreachable, or an answer that
/// did not verify. Its reason is a sentence for the log.
public enum NegotiationAnswer: Sendable, Equatable {
    case accepted(virtualPort: UInt16)
    case refused(reason: String)
    case failed(reason: String)
}
