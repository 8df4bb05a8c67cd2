/// A view of an IPv4 header (RFC 791) at the start of `bytes`; no copy.
public struct IPv4Header {
    private enum Field {
        static let versionAndHeaderLength = 0
        static let differentiatedServices = 1
        static let totalLength = 2
        static let identification = 4
        static let flagsAndFragmentOffset = 6
        static let timeToLive = 8
        static let protocolNumber = 9
        static let headerChecksum = 10
        static let sourceAddress = 12
        static let destinationAddress = 16
        static let options = 20
    }

    /// The length of a header without options.
    public static let minimumLength = Field.options

    /// The whole buffer the header starts; for a checked view it holds at least `totalLength` bytes.
    public let bytes: UnsafeMutableRawBufferPointer

    /// Wraps `bytes` without checks; the caller guarantees at least `minimumLength` bytes.
    public init(unchecked bytes: UnsafeMutableRawBufferPointer) {
        self.bytes = bytes
    }

    /// Wraps `bytes` after checking that the version is 4, the header and total length fields
    /// are consistent, and the buffer holds the whole datagram (extra trailing bytes are allowed).
    public init(checking bytes: UnsafeMutableRawBufferPointer) throws(PacketError) {
        guard let first = bytes.first else { throw .empty }
        guard first >> 4 == 4 else { throw .unknownVersion(first >> 4) }
        guard bytes.count >= Self.minimumLength else { throw .truncatedNetworkHeader }
        self.init(unchecked: bytes)
        let total = totalLength
        guard total >= Self.minimumLength else { throw .badTotalLength(total) }
        let words = Int(first & 0x0F)
        guard words >= 5, words * 4 <= total else { throw .badHeaderLength(words) }
        guard total <= bytes.count else { throw .truncated(captured: bytes.count, declared: total) }
    }

    public var version: UInt8 { bytes[Field.versionAndHeaderLength] >> 4 }
    /// The header length in bytes, options included (IHL * 4).
    public var headerLength: Int { Int(bytes[Field.versionAndHeaderLength] & 0x0F) * 4 }
    public var differentiatedServices: UInt8 { bytes[Field.differentiatedServices] }
    public var totalLength: Int { Int(bytes.loadBigEndianUInt16(at: Field.totalLength)) }
    public var identification: UInt16 { bytes.loadBigEndianUInt16(at: Field.identification) }
    public var dontFragment: Bool { bytes.loadBigEndianUInt16(at: Field.flagsAndFragmentOffset) & 0x4000 != 0 }
    public var moreFragments: Bool { bytes.loadBigEndianUInt16(at: Field.flagsAndFragmentOffset) & 0x2000 != 0 }
    /// The fragment offset in bytes (the field counts 8-byte units).
    public var fragmentOffset: Int { Int(bytes.loadBigEndianUInt16(at: Field.flagsAndFragmentOffset) & 0x1FFF) * 8 }
    public var timeToLive: UInt8 { bytes[Field.timeToLive] }
    public var protocolNumber: UInt8 { bytes[Field.protocolNumber] }
    public var headerChecksum: UInt16 { bytes.loadBigEndianUInt16(at: Field.headerChecksum) }
    public var sourceAddress: IPAddress { IPAddress(ipv4At: Field.sourceAddress, in: bytes) }
    public var destinationAddress: IPAddress { IPAddress(ipv4At: Field.destinationAddress, in: bytes) }
    /// The option bytes between the fixed header and `headerLength`.
    public var options: UnsafeMutableRawBufferPointer { bytes.slice(Field.options..<headerLength) }

    /// Source then destination address, as the pseudo-header sums them.
    var pseudoHeaderAddresses: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(bytes.slice(Field.sourceAddress..<Field.destinationAddress + 4))
    }

    /// Sets version 4 and the header length in bytes (a multiple of 4, 20...60).
    public mutating func setHeaderLength(_ length: Int) {
        bytes[Field.versionAndHeaderLength] = 0x40 | UInt8(truncatingIfNeeded: length / 4)
    }
    public mutating func setDifferentiatedServices(_ value: UInt8) { bytes[Field.differentiatedServices] = value }
    public mutating func setTotalLength(_ length: Int) {
        bytes.storeBigEndian(UInt16(truncatingIfNeeded: length), at: Field.totalLength)
    }
    public mutating func setIdentification(_ value: UInt16) { bytes.storeBigEndian(value, at: Field.identification) }
    /// Sets the flags and the fragment offset (in bytes, a multiple of 8) together.
    public mutating func setFragmentation(dontFragment: Bool, moreFragments: Bool, offset: Int) {
        let value = (dontFragment ? 0x4000 : 0) | (moreFragments ? 0x2000 : 0) | (offset / 8 & 0x1FFF)
        bytes.storeBigEndian(UInt16(truncatingIfNeeded: value), at: Field.flagsAndFragmentOffset)
    }
    public mutating func setTimeToLive(_ value: UInt8) { bytes[Field.timeToLive] = value }
    public mutating func setProtocolNumber(_ value: UInt8) { bytes[Field.protocolNumber] = value }
    public mutating func setHeaderChecksum(_ value: UInt16) { bytes.storeBigEndian(value, at: Field.headerChecksum) }
    /// Stores the IPv4 form of `address`, which must be IPv4.
    public mutating func setSourceAddress(_ address: IPAddress) {
        address.storeIPv4(at: Field.sourceAddress, in: bytes)
    }
    /// Stores the IPv4 form of `address`, which must be IPv4.
    public mutating func setDestinationAddress(_ address: IPAddress) {
        address.storeIPv4(at: Field.destinationAddress, in: bytes)
    }

    /// Whether the header checksum covers the header (options included) correctly.
    public func headerChecksumIsValid() -> Bool {
        InternetChecksum.sum(bytes.slice(0..<headerLength)) == 0xFFFF
    }

    public mutating func fillHeaderChecksum() {
        setHeaderChecksum(0)
        setHeaderChecksum(~InternetChecksum.sum(bytes.slice(0..<headerLength)))
    }
}
