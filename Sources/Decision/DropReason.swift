public import Packet

/// Why the engine dropped or refused a packet. A fixed set, so counting one is an array
/// increment on the packet path. `identifier` keys it in JSON (stable: scripts and tests
/// read it); `name` is the sentence `vpm stats` shows people.
public enum DropReason: Int, CaseIterable, Sendable, Error {
    // Dropped:
    case truncated, malformed, unsupported, fragment, noFlow, unknownVirtualPort, wrongHook
    case notNegotiated, retransmittedWhileNegotiating
    // Refused (the client gets a reset or an ICMP error):
    case noApplication, noInstance, tableFull, notConnectionStart, negotiationRefused, tooManyNegotiations

    /// The case's name ("noApplication"): the key in `vpm stats --json`.
    public var identifier: String { String(describing: self) }

    public init?(identifier: String) {
        guard let reason = Self.allCases.first(where: { $0.identifier == identifier }) else { return nil }
        self = reason
    }

    public var name: String {
        switch self {
        case .truncated: "truncated copy"
        case .malformed: "malformed packet"
        case .unsupported: "unsupported protocol"
        case .fragment: "fragment"
        case .noFlow: "no flow for a reply"
        case .unknownVirtualPort: "reply from a virtual port without instance"
        case .wrongHook: "queued from an unexpected hook"
        case .notNegotiated: "to a virtual port without a negotiated flow"
        case .retransmittedWhileNegotiating: "sent again while negotiating (a SYN, or UDP beyond 64 held)"
        case .noApplication: "no AID matches the client"
        case .noInstance: "the AID has no instance on this port"
        case .tableFull: "flow table full"
        case .notConnectionStart: "no flow and not a connection start"
        case .negotiationRefused: "the peer engine refused or did not answer"
        case .tooManyNegotiations: "too many connections waiting for a negotiation"
        }
    }

    public init(_ error: PacketError) {
        switch error {
        case .truncated: self = .truncated
        case .nonFirstFragment, .fragmentNeedsFullChecksum: self = .fragment
        case .unsupportedTransport: self = .unsupported
        default: self = .malformed
        }
    }
}
