/// A view of an IPv6 fixed header (RFC 8200 §3) at the start of `bytes`; no copy.
public struct IPv6Header {
    private enum Field {
        static let versionClassAndFlowLabel = 0
        static let payloadLength = 4
        static let nextHeader = 6
        static let hopLimit = 7
        static let sourceAddress = 8
        static let destinationAddress = 24
        static let payload = 40
    }

    /// The length of the fixed header.
    public static let length = Field.payload

    /// The whole buffer the header starts; for a checked view it holds at least `totalLength` bytes.
    public let bytes: UnsafeMutableRawBufferPointer

    /// Wraps `bytes` without checks; the caller guarantees at least `length` bytes.
    public init(unchecked bytes: UnsafeMutableRawBufferPointer) {
        self.bytes = bytes
    }

    /// Wraps `bytes` after checking that the version is 6, the payload length is not a
    /// jumbogram's 0, and the buffer holds the whole packet (extra trailing bytes are allowed).
    public init(checking bytes: UnsafeMutableRawBufferPointer) throws(PacketError) {
        guard let first = bytes.first else { throw .empty }
        guard first >> 4 == 6 else { throw .unknownVersion(first >> 4) }
        guard bytes.count >= Self.length else { throw .truncatedNetworkHeader }
        self.init(unchecked: bytes)
        // Payload length 0 announces a jumbogram (RFC 2675); NFQUEUE never needs one here.
        guard payloadLength > 0 else { throw .badTotalLength(0) }
        guard totalLength <= bytes.count else { throw .truncated(captured: bytes.count, declared: totalLength) }
    }

    public var version: UInt8 { bytes[Field.versionClassAndFlowLabel] >> 4 }
    public var trafficClass: UInt8 {
        UInt8(truncatingIfNeeded: bytes.loadBigEndianUInt32(at: Field.versionClassAndFlowLabel) >> 20)
    }
    public var flowLabel: UInt32 { bytes.loadBigEndianUInt32(at: Field.versionClassAndFlowLabel) & 0xF_FFFF }
    /// The length after the fixed header: extension headers and the upper-layer packet.
    public var payloadLength: Int { Int(bytes.loadBigEndianUInt16(at: Field.payloadLength)) }
    /// The fixed header plus `payloadLength`.
    public var totalLength: Int { Self.length + payloadLength }
    public var nextHeader: UInt8 { bytes[Field.nextHeader] }
    public var hopLimit: UInt8 { bytes[Field.hopLimit] }
    public var sourceAddress: IPAddress { IPAddress(ipv6At: Field.sourceAddress, in: bytes) }
    public var destinationAddress: IPAddress { IPAddress(ipv6At: Field.destinationAddress, in: bytes) }

    /// Source then destination address, as the pseudo-header sums them.
    var pseudoHeaderAddresses: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(bytes.slice(Field.sourceAddress..<Field.payload))
    }

    /// Sets version 6, the traffic class and the flow label together.
    public mutating func setTrafficClassAndFlowLabel(trafficClass: UInt8, flowLabel: UInt32) {
        let value = 0x6000_0000 | UInt32(trafficClass) << 20 | flowLabel & 0xF_FFFF
        bytes.storeBigEndian(value, at: Field.versionClassAndFlowLabel)
    }
    public mutating func setPayloadLength(_ length: Int) {
        bytes.storeBigEndian(UInt16(truncatingIfNeeded: length), at: Field.payloadLength)
    }
    public mutating func setNextHeader(_ value: UInt8) { bytes[Field.nextHeader] = value }
    public mutating func setHopLimit(_ value: UInt8) { bytes[Field.hopLimit] = value }
    public mutating func setSourceAddress(_ address: IPAddress) {
        address.storeIPv6(at: Field.sourceAddress, in: bytes)
    }
    public mutating func setDestinationAddress(_ address: IPAddress) {
        address.storeIPv6(at: Field.destinationAddress, in: bytes)
    }
}
