/// A view of a TCP segment (RFC 9293 §3.1): header, options and payload; no copy.
public struct TCPHeader {
    private enum Field {
        static let sourcePort = 0
        static let destinationPort = 2
        static let sequenceNumber = 4
        static let acknowledgmentNumber = 8
        static let dataOffset = 12
        static let flags = 13
        static let windowSize = 14
        static let checksum = 16
        static let urgentPointer = 18
        static let options = 20
    }

    /// The length of a header without options.
    public static let minimumLength = Field.options
    /// Offset of the checksum field, for code that patches it in a larger buffer.
    public static let checksumOffset = Field.checksum

    /// The segment: exactly the transport length the IP header declares.
    public let bytes: UnsafeMutableRawBufferPointer

    /// Wraps `bytes` without checks; the caller guarantees at least `minimumLength` bytes.
    public init(unchecked bytes: UnsafeMutableRawBufferPointer) {
        self.bytes = bytes
    }

    /// Wraps the segment `bytes` after checking that the header, options included, fits.
    public init(checking bytes: UnsafeMutableRawBufferPointer) throws(PacketError) {
        guard bytes.count >= Self.minimumLength else { throw .truncatedTransportHeader }
        self.init(unchecked: bytes)
        let words = Int(bytes[Field.dataOffset] >> 4)
        guard words >= 5, words * 4 <= bytes.count else { throw .badDataOffset(words) }
    }

    public var sourcePort: UInt16 { bytes.loadBigEndianUInt16(at: Field.sourcePort) }
    public var destinationPort: UInt16 { bytes.loadBigEndianUInt16(at: Field.destinationPort) }
    public var sequenceNumber: UInt32 { bytes.loadBigEndianUInt32(at: Field.sequenceNumber) }
    public var acknowledgmentNumber: UInt32 { bytes.loadBigEndianUInt32(at: Field.acknowledgmentNumber) }
    /// The header length in bytes, options included (data offset * 4).
    public var headerLength: Int { Int(bytes[Field.dataOffset] >> 4) * 4 }
    public var flags: TCPFlags { TCPFlags(rawValue: bytes[Field.flags]) }
    public var windowSize: UInt16 { bytes.loadBigEndianUInt16(at: Field.windowSize) }
    public var checksum: UInt16 { bytes.loadBigEndianUInt16(at: Field.checksum) }
    public var urgentPointer: UInt16 { bytes.loadBigEndianUInt16(at: Field.urgentPointer) }
    public var options: UnsafeMutableRawBufferPointer { bytes.slice(Field.options..<headerLength) }
    public var payload: UnsafeMutableRawBufferPointer { bytes.slice(headerLength..<bytes.count) }

    public mutating func setSourcePort(_ port: UInt16) { bytes.storeBigEndian(port, at: Field.sourcePort) }
    public mutating func setDestinationPort(_ port: UInt16) { bytes.storeBigEndian(port, at: Field.destinationPort) }
    public mutating func setSequenceNumber(_ value: UInt32) { bytes.storeBigEndian(value, at: Field.sequenceNumber) }
    public mutating func setAcknowledgmentNumber(_ value: UInt32) {
        bytes.storeBigEndian(value, at: Field.acknowledgmentNumber)
    }
    /// Sets the header length in bytes (a multiple of 4, 20...60) and clears the reserved bits.
    public mutating func setHeaderLength(_ length: Int) {
        bytes[Field.dataOffset] = UInt8(truncatingIfNeeded: length / 4) << 4
    }
    public mutating func setFlags(_ flags: TCPFlags) { bytes[Field.flags] = flags.rawValue }
    public mutating func setWindowSize(_ value: UInt16) { bytes.storeBigEndian(value, at: Field.windowSize) }
    public mutating func setChecksum(_ value: UInt16) { bytes.storeBigEndian(value, at: Field.checksum) }
    public mutating func setUrgentPointer(_ value: UInt16) { bytes.storeBigEndian(value, at: Field.urgentPointer) }
}
