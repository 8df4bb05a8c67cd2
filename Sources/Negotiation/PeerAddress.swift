public import NIOCore

/// The text form of addresses on the negotiation channel.
public enum PeerAddress {
    /// The peer's IP address as the key closure sees it: "198.18.0.2", "2001:db8::2".
    /// An IPv4-mapped IPv6 address (a dual-stack listener) is given as plain IPv4.
    public static func text(of address: SocketAddress?) -> String {
        guard let ip = address?.ipAddress else { return "unknown" }
        let mapped = "::ffff:"
        if ip.lowercased().hasPrefix(mapped), ip.contains(".") {
            return String(ip.dropFirst(mapped.count))
        }
        return ip
    }

    /// "198.18.0.1:9901" or "[::1]:9901", for messages.
    public static func endpoint(_ host: String, _ port: Int) -> String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }
}
