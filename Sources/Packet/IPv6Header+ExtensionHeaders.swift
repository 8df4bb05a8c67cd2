extension IPv6Header {
    /// IPv6 extension header numbers the walk steps over (RFC 8200 §4).
    enum ExtensionHeader {
        static let hopByHop: UInt8 = 0
        static let routing: UInt8 = 43
        static let fragment: UInt8 = 44
        static let destinationOptions: UInt8 = 60
    }

    /// Walks the extension headers to the TCP or UDP header. Requires a checked view.
    /// ESP, AH, "no next header" and unknown headers end the walk: what follows them is not
    /// readable or not ours.
    func locateTransport() throws(PacketError) -> TransportLocation {
        let end = totalLength
        var offset = Self.length
        var next = nextHeader
        var isFirstFragment = false
        // Every extension header is at least 8 bytes, so the walk ends within the payload.
        while true {
            switch next {
            case TransportProtocol.tcp.rawValue:
                return TransportLocation(offset: offset, transportProtocol: .tcp, isFirstFragment: isFirstFragment)
            case TransportProtocol.udp.rawValue:
                return TransportLocation(offset: offset, transportProtocol: .udp, isFirstFragment: isFirstFragment)
            case ExtensionHeader.hopByHop, ExtensionHeader.routing, ExtensionHeader.destinationOptions:
                // Hop-by-hop options may only follow the fixed header (RFC 8200 §4.3).
                guard next != ExtensionHeader.hopByHop || offset == Self.length else { throw .badExtensionHeader }
                guard offset + 8 <= end else { throw .badExtensionHeader }
                let length = (Int(bytes[offset + 1]) + 1) * 8
                guard offset + length <= end else { throw .badExtensionHeader }
                next = bytes[offset]
                offset += length
            case ExtensionHeader.fragment:
                guard offset + 8 <= end else { throw .badExtensionHeader }
                let offsetAndFlags = bytes.loadBigEndianUInt16(at: offset + 2)
                guard offsetAndFlags >> 3 == 0 else { throw .nonFirstFragment }
                // Offset 0 without "more fragments" is an atomic fragment: the whole datagram.
                isFirstFragment = offsetAndFlags & 1 != 0
                next = bytes[offset]
                offset += 8
            default:
                throw .unsupportedTransport(next)
            }
        }
    }
}
