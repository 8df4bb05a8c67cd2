public import Packet

/// One flow, named the same way from both directions: the client side and the server side
/// as the client sees them (the server at its initial port). The engine builds it from an
/// ingress packet (client → server:initialPort) and, for an egress packet, derives the
/// initial port from the virtual port it carries.
public struct FlowKey: Hashable, Sendable {
    // Stored widest first so the key packs into 40 bytes (37 used) instead of 56.
    public var client: IPAddress
    public var server: IPAddress
    public var clientPort: UInt16
    public var initialPort: UInt16
    public var transport: TransportProtocol

    public init(
        transport: TransportProtocol,
        client: IPAddress,
        clientPort: UInt16,
        server: IPAddress,
        initialPort: UInt16
    ) {
        self.transport = transport
        self.client = client
        self.clientPort = clientPort
        self.server = server
        self.initialPort = initialPort
    }

    /// Five words instead of the synthesized field-by-field feed: the key is hashed for
    /// every packet, and the ports and protocol fit in one word.
    public func hash(into hasher: inout Hasher) {
        hasher.combine(client.high)
        hasher.combine(client.low)
        hasher.combine(server.high)
        hasher.combine(server.low)
        hasher.combine(UInt64(clientPort) << 24 | UInt64(initialPort) << 8 | UInt64(transport.rawValue))
    }
}

extension FlowKey: CustomStringConvertible {
    /// "tcp 198.18.0.2:40000 -> 198.18.0.1:9000", brackets around IPv6 addresses.
    public var description: String {
        "\(transport.name) \(client.endpoint(clientPort)) -> \(server.endpoint(initialPort))"
    }
}
