/// One translation as the control socket reports it: everything `vpm flows` shows.
public struct FlowRecord: Codable, Sendable, Equatable {
    public var transport: String
    public var state: String
    public var mode: String
    public var client: String
    public var clientPort: UInt16
    public var server: String
    public var initialPort: UInt16
    public var virtualPort: UInt16
    public var aid: String
    public var peer: String?
    /// Seconds since the first packet.
    public var age: Double
    /// Seconds since the last packet.
    public var idle: Double
    public var packetsToServer: UInt64
    public var bytesToServer: UInt64
    public var packetsToClient: UInt64
    public var bytesToClient: UInt64

    public init(
        transport: String, state: String, mode: String, client: String, clientPort: UInt16,
        server: String, initialPort: UInt16, virtualPort: UInt16, aid: String, peer: String?,
        age: Double, idle: Double, packetsToServer: UInt64, bytesToServer: UInt64,
        packetsToClient: UInt64, bytesToClient: UInt64
    ) {
        self.transport = transport
        self.state = state
        self.mode = mode
        self.client = client
        self.clientPort = clientPort
        self.server = server
        self.initialPort = initialPort
        self.virtualPort = virtualPort
        self.aid = aid
        self.peer = peer
        self.age = age
        self.idle = idle
        self.packetsToServer = packetsToServer
        self.bytesToServer = bytesToServer
        self.packetsToClient = packetsToClient
        self.bytesToClient = bytesToClient
    }
}
