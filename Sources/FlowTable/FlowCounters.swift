/// Packets and bytes (IP packet length as queued) seen in each direction.
public struct FlowCounters: Sendable, Equatable, Hashable, Codable {
    public var packetsToServer: UInt64
    public var bytesToServer: UInt64
    public var packetsToClient: UInt64
    public var bytesToClient: UInt64

    public init(packetsToServer: UInt64 = 0, bytesToServer: UInt64 = 0, packetsToClient: UInt64 = 0, bytesToClient: UInt64 = 0) {
        self.packetsToServer = packetsToServer
        self.bytesToServer = bytesToServer
        self.packetsToClient = packetsToClient
        self.bytesToClient = bytesToClient
    }

    public static let zero = FlowCounters()

    /// Counts one packet of `bytes` bytes going `direction`.
    mutating func count(_ direction: Direction, bytes: UInt64) {
        switch direction {
        case .toServer:
            packetsToServer &+= 1
            bytesToServer &+= bytes
        case .toClient:
            packetsToClient &+= 1
            bytesToClient &+= bytes
        }
    }
}
