/// The parsed view the engine uses: an IPv4 or IPv6 datagram carrying TCP or UDP, checked
/// once at construction so every later access stays inside the declared lengths.
public struct IPPacket {
    /// Exactly the datagram the IP header declares; trailing bytes (Ethernet padding) are cut off.
    public let bytes: UnsafeMutableRawBufferPointer
    public let version: IPVersion
    public let transportProtocol: TransportProtocol
    /// IPv4: IHL * 4, options included. IPv6: 40 plus the extension headers.
    public let networkHeaderLength: Int
    /// Transport header plus payload, from the IP header's lengths.
    public let transportLength: Int
    /// A first fragment (more fragments follow): the segment here is not the whole datagram.
    public let isFragment: Bool

    /// Parses `bytes`, which must hold at least the length the IP header declares.
    public init(_ bytes: UnsafeMutableRawBufferPointer) throws(PacketError) {
        guard let first = bytes.first else { throw .empty }
        let location: TransportLocation
        let totalLength: Int
        switch first >> 4 {
        case 4:
            let header = try IPv4Header(checking: bytes)
            location = try header.locateTransport()
            totalLength = header.totalLength
            version = .v4
        case 6:
            let header = try IPv6Header(checking: bytes)
            location = try header.locateTransport()
            totalLength = header.totalLength
            version = .v6
        default:
            throw .unknownVersion(first >> 4)
        }
        let datagram = bytes.slice(0..<totalLength)
        let segment = datagram.slice(location.offset..<totalLength)
        switch location.transportProtocol {
        case .tcp: _ = try TCPHeader(checking: segment)
        case .udp: _ = try UDPHeader(checking: segment, isFirstFragment: location.isFirstFragment)
        }
        self.bytes = datagram
        transportProtocol = location.transportProtocol
        networkHeaderLength = location.offset
        transportLength = totalLength - location.offset
        isFragment = location.isFirstFragment
    }

    /// Offset of the TCP or UDP header from the start of `bytes`.
    public var transportOffset: Int { networkHeaderLength }

    /// The transport header and payload.
    public var transportSegment: UnsafeMutableRawBufferPointer {
        bytes.slice(transportOffset..<bytes.count)
    }

    public var sourceAddress: IPAddress {
        switch version {
        case .v4: IPv4Header(unchecked: bytes).sourceAddress
        case .v6: IPv6Header(unchecked: bytes).sourceAddress
        }
    }

    public var destinationAddress: IPAddress {
        switch version {
        case .v4: IPv4Header(unchecked: bytes).destinationAddress
        case .v6: IPv6Header(unchecked: bytes).destinationAddress
        }
    }

    // TCP and UDP both start with source port then destination port.
    public var sourcePort: UInt16 { bytes.loadBigEndianUInt16(at: transportOffset) }
    public var destinationPort: UInt16 { bytes.loadBigEndianUInt16(at: transportOffset + 2) }

    /// The TCP control bits; empty for UDP.
    public var tcpFlags: TCPFlags {
        transportProtocol == .tcp ? TCPHeader(unchecked: transportSegment).flags : []
    }

    public var ipv4Header: IPv4Header? { version == .v4 ? IPv4Header(unchecked: bytes) : nil }
    public var ipv6Header: IPv6Header? { version == .v6 ? IPv6Header(unchecked: bytes) : nil }
    public var tcpHeader: TCPHeader? { transportProtocol == .tcp ? TCPHeader(unchecked: transportSegment) : nil }
    public var udpHeader: UDPHeader? { transportProtocol == .udp ? UDPHeader(unchecked: transportSegment) : nil }
}
