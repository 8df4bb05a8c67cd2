/// Why a line was not accepted as a negotiation message.
public enum NegotiationMessageError: Error, Equatable, CustomStringConvertible {
    /// Framing, base64, JSON, a field, the type or the version is wrong. The text says which.
    case malformed(String)
    /// The MAC does not match the key (or there is no key for the peer).
    case forged

    public var description: String {
        switch self {
        case .malformed(let detail): "malformed negotiation message: \(detail)"
        case .forged: "forged negotiation message: the MAC does not match the key for this peer (do both engines have the same key?)"
        }
    }
}
