/// A view of a UDP datagram (RFC 768): header and payload; no copy.
public struct UDPHeader {
    private enum Field {
        static let sourcePort = 0
        static let destinationPort = 2
        static let length = 4
        static let checksum = 6
        static let payload = 8
    }

    /// The length of the header.
    public static let headerLength = Field.payload
    /// Offset of the checksum field, for code that patches it in a larger buffer.
    public static let checksumOffset = Field.checksum

    /// The datagram: exactly the transport length the IP header declares.
    public let bytes: UnsafeMutableRawBufferPointer

    /// Wraps `bytes` without checks; the caller guarantees at least `headerLength` bytes.
    public init(unchecked bytes: UnsafeMutableRawBufferPointer) {
        self.bytes = bytes
    }

    /// Wraps the datagram `bytes` after checking that the UDP length field equals the IP
    /// transport length. In a first fragment the field covers the whole datagram, so there it
    /// only has to cover this fragment.
    public init(checking bytes: UnsafeMutableRawBufferPointer, isFirstFragment: Bool = false) throws(PacketError) {
        guard bytes.count >= Self.headerLength else { throw .truncatedTransportHeader }
        self.init(unchecked: bytes)
        let declared = length
        let consistent = isFirstFragment ? declared > bytes.count : declared == bytes.count
        guard declared >= Self.headerLength, consistent else { throw .badUDPLength(declared) }
    }

    public var sourcePort: UInt16 { bytes.loadBigEndianUInt16(at: Field.sourcePort) }
    public var destinationPort: UInt16 { bytes.loadBigEndianUInt16(at: Field.destinationPort) }
    /// The UDP length field: header plus payload.
    public var length: Int { Int(bytes.loadBigEndianUInt16(at: Field.length)) }
    /// 0 means "no checksum" over IPv4.
    public var checksum: UInt16 { bytes.loadBigEndianUInt16(at: Field.checksum) }
    public var payload: UnsafeMutableRawBufferPointer { bytes.slice(Field.payload..<bytes.count) }

    public mutating func setSourcePort(_ port: UInt16) { bytes.storeBigEndian(port, at: Field.sourcePort) }
    public mutating func setDestinationPort(_ port: UInt16) { bytes.storeBigEndian(port, at: Field.destinationPort) }
    public mutating func setLength(_ length: Int) {
        bytes.storeBigEndian(UInt16(truncatingIfNeeded: length), at: Field.length)
    }
    public mutating func setChecksum(_ value: UInt16) { bytes.storeBigEndian(value, at: Field.checksum) }
}
