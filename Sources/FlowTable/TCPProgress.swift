/// What a TCP flow has shown so far, beyond its state: the handshake and teardown steps
/// that decide the next transition.
struct TCPProgress: OptionSet {
    let rawValue: UInt8

    /// The server answered the SYN with SYN+ACK.
    static let synAckToClient = TCPProgress(rawValue: 1 << 0)
    /// A packet without SYN went to the server.
    static let dataToServer = TCPProgress(rawValue: 1 << 1)
    /// A packet without SYN went to the client.
    static let dataToClient = TCPProgress(rawValue: 1 << 2)
    /// The client sent FIN.
    static let finFromClient = TCPProgress(rawValue: 1 << 3)
    /// The server sent FIN.
    static let finFromServer = TCPProgress(rawValue: 1 << 4)
    /// Of the two FINs, the server's came last: the client's ACK closes the flow.
    static let lastFinFromServer = TCPProgress(rawValue: 1 << 5)

    static let bothFins: TCPProgress = [.finFromClient, .finFromServer]
    static let dataBothWays: TCPProgress = [.dataToServer, .dataToClient]
}
