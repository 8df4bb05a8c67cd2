/// Why a packet was not parsed or rewritten. Thrown before any byte changes.
public enum PacketError: Error, Equatable, Sendable {
    /// The buffer holds no bytes.
    case empty
    /// The IP version nibble is neither 4 nor 6.
    case unknownVersion(UInt8)
    /// The buffer is shorter than the fixed IPv4 (20) or IPv6 (40) header.
    case truncatedNetworkHeader
    /// The IPv4 header length field (IHL, in 32-bit words) is below 5 or beyond the total length.
    case badHeaderLength(Int)
    /// The IP length field is impossible: IPv4 total length below 20, IPv6 payload length 0
    /// (a jumbogram, RFC 2675), or a length that does not fit an emitted packet.
    case badTotalLength(Int)
    /// The buffer is shorter than the length the IP header declares (NFQUEUE copy range
    /// smaller than the packet). Sending it back would truncate the real packet.
    case truncated(captured: Int, declared: Int)
    /// A fragment other than the first: it carries no transport header.
    case nonFirstFragment
    /// The packet carries a protocol vpm does not rewrite (ICMP, ESP, AH, no next header, ...).
    case unsupportedTransport(UInt8)
    /// An IPv6 extension header runs past the payload or appears where it may not.
    case badExtensionHeader
    /// The transport header does not fit in the transport length the IP header declares.
    case truncatedTransportHeader
    /// The TCP data offset field (in 32-bit words) is below 5 or beyond the segment.
    case badDataOffset(Int)
    /// The UDP length field disagrees with the transport length the IP header declares.
    case badUDPLength(Int)
    /// A first fragment arrived with a partial checksum; the full checksum covers the whole
    /// datagram, which a single fragment does not hold.
    case fragmentNeedsFullChecksum
}

extension PacketError: CustomStringConvertible {
    public var description: String {
        switch self {
        case .empty:
            "empty packet"
        case .unknownVersion(let version):
            "unknown IP version \(version)"
        case .truncatedNetworkHeader:
            "packet shorter than its IP header"
        case .badHeaderLength(let words):
            "bad IPv4 header length \(words) words (\(words * 4) bytes)"
        case .badTotalLength(let length):
            "bad IP length \(length)"
        case .truncated(let captured, let declared):
            "packet truncated: captured \(captured) of \(declared) bytes (is the queue copy range too small?)"
        case .nonFirstFragment:
            "non-first IP fragment carries no transport header"
        case .unsupportedTransport(let number):
            "unsupported transport protocol \(number)"
        case .badExtensionHeader:
            "malformed IPv6 extension header"
        case .truncatedTransportHeader:
            "transport header truncated"
        case .badDataOffset(let words):
            "bad TCP data offset \(words) words (\(words * 4) bytes)"
        case .badUDPLength(let length):
            "UDP length \(length) disagrees with the IP length"
        case .fragmentNeedsFullChecksum:
            "first fragment with a partial checksum: the full checksum needs the whole datagram"
        }
    }
}
