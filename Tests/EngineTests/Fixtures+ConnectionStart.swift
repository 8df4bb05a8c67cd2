import Packet

/// A connection's first packet as the kernel would queue it: a TCP SYN (or an empty UDP
/// datagram), built with the Packet module's emitter. Shared by the processor tests.
func syn(
    from source: IPAddress, _ port: UInt16, to destination: IPAddress, _ destinationPort: UInt16,
    transport: TransportProtocol = .tcp, flags: TCPFlags = [.syn]
) throws -> [UInt8] {
    let representation = PacketRepresentation(sourceAddress: source, destinationAddress: destination, transportProtocol: transport,
                                              sourcePort: port, destinationPort: destinationPort,
                                              tcpFlags: transport == .tcp ? flags : [])
    var bytes = [UInt8](repeating: 0, count: representation.emittedLength(payloadLength: 0))
    try bytes.withUnsafeMutableBytes { _ = try representation.emit(into: $0) }
    return bytes
}
