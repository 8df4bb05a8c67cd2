/// Where a datagram's transport header starts, found by walking its network header(s).
struct TransportLocation {
    /// Offset of the transport header from the start of the IP header.
    let offset: Int
    let transportProtocol: TransportProtocol
    /// First fragment of a fragmented datagram: the transport length is not the datagram's.
    let isFirstFragment: Bool
}
