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

/// Encoded as its name ("tcp", "udp"), as in every file and message vpm writes.
extension TransportProtocol: Codable, CustomStringConvertible {
    public var description: String { name }

    public init(from decoder: any Decoder) throws {
        let name = try decoder.singleValueContainer().decode(String.self)
        guard let transport = TransportProtocol(name: name) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "'\(name)' is not tcp or udp"))
        }
        self = transport
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(name)
    }
}
