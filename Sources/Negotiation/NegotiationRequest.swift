/// What a client host's engine asks a server host's engine: "which virtual port does an
/// instance of `aid` listening on `initialPort` have, for this client's connection?"
///
/// Addresses are strings as the engines print them ("198.18.0.2", "2001:db8::2"); this
/// module does not interpret them.
public struct NegotiationRequest: Sendable, Equatable, Codable {
    /// The AID of the client program: it chooses the instance on the server host.
    public var aid: String
    /// The client's address and port as they will appear on the wire.
    public var client: String
    public var clientPort: UInt16
    /// The server address the client dialed.
    public var server: String
    /// The port the client program dialed (p1, e.g. 9000).
    public var initialPort: UInt16
    /// "tcp" or "udp".
    public var transport: String

    public init(aid: String, client: String, clientPort: UInt16, server: String, initialPort: UInt16, transport: String) {
        self.aid = aid
        self.client = client
        self.clientPort = clientPort
        self.server = server
        self.initialPort = initialPort
        self.transport = transport
    }
}
