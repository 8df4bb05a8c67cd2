public import FlowTable
public import Packet

/// One application instance: the processes with one AID serving one initial port, which
/// really listen on `virtualPort`.
public struct Instance: Hashable, Sendable, CustomStringConvertible {
    public var aid: AID
    public var initialPort: InitialPort
    public var virtualPort: UInt16
    /// False while the instance drains: its listening sockets are closed but connections it
    /// accepted still run (a graceful shutdown). Their packets are still translated; new
    /// connections are not routed to it.
    public var accepting: Bool

    public init(aid: AID, initialPort: InitialPort, virtualPort: UInt16, accepting: Bool = true) {
        self.aid = aid
        self.initialPort = initialPort
        self.virtualPort = virtualPort
        self.accepting = accepting
    }

    /// The virtual port carries the initial port's transport.
    public var transport: TransportProtocol { initialPort.transport }

    /// "acme 9000/tcp -> 20017"
    public var description: String {
        "\(aid) \(initialPort) -> \(virtualPort)"
    }
}
