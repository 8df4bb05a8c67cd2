/// The transport protocols vpm rewrites, by their IP protocol number.
public enum TransportProtocol: UInt8, Sendable {
    case tcp = 6
    case udp = 17
}

extension TransportProtocol {
    /// "tcp" or "udp": the name in configuration files, on the control socket, in the
    /// negotiation protocol, in iptables/nft rules and in logs.
    public var name: String { self == .tcp ? "tcp" : "udp" }

    /// From "tcp" or "udp"; nil for any other text.
    public init?(name: String) {
        switch name {
        case "tcp": self = .tcp
        case "udp": self = .udp
        default: return nil
        }
    }
}
