public import FlowTable
public import Packet

/// One application instance: the processes with one AID serving one initial port, which
/// really listen on `virtualPort`.
public struct Instance: Hashable, Sendable, CustomStringConvertible {
    public var aid: AID
    public var initialPort: InitialPort
    public var virtualPort: UInt16

    public init(aid: AID, initialPort: InitialPort, virtualPort: UInt16) {
        self.aid = aid
        self.initialPort = initialPort
        self.virtualPort = virtualPort
    }

    /// The virtual port carries the initial port's transport.
    public var transport: TransportProtocol { initialPort.transport }

    /// "acme 9000/tcp -> 20017"
    public var description: String {
        "\(aid) \(initialPort) -> \(virtualPort)"
    }
}
