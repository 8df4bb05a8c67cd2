/// An IPv4 or IPv6 address in 16 bytes; IPv4 is stored IPv4-mapped (::ffff:a.b.c.d, RFC 4291
/// §2.5.5.2) so one type keys flow tables for both families.
public struct IPAddress: Hashable, Sendable {
    /// Bytes 0..<8 of the address as a big-endian integer.
    public let high: UInt64
    /// Bytes 8..<16 of the address as a big-endian integer.
    public let low: UInt64

    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// The IPv4 address `value` (a.b.c.d is 0xaabbccdd), IPv4-mapped.
    public init(ipv4 value: UInt32) {
        self.init(high: 0, low: 0x0000_FFFF_0000_0000 | UInt64(value))
    }

    /// The IPv4 address a.b.c.d.
    public init(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8) {
        self.init(ipv4: UInt32(a) << 24 | UInt32(b) << 16 | UInt32(c) << 8 | UInt32(d))
    }

    public var isIPv4: Bool {
        high == 0 && low >> 32 == 0x0000_FFFF
    }

    /// The IPv4 address as a big-endian integer, or nil for an IPv6 address.
    public var ipv4Value: UInt32? {
        isIPv4 ? UInt32(truncatingIfNeeded: low) : nil
    }

    /// The 16-bit group `index` (0..<8) of the IPv6 form.
    public func group(_ index: Int) -> UInt16 {
        let word = index < 4 ? high : low
        return UInt16(truncatingIfNeeded: word >> (UInt64(3 - index % 4) * 16))
    }

    public static let any = IPAddress(high: 0, low: 0)
    public static let loopbackIPv6 = IPAddress(high: 0, low: 1)
    public static let loopbackIPv4 = IPAddress(127, 0, 0, 1)

    /// Reads an IPv4 address (4 bytes) at `offset`.
    init(ipv4At offset: Int, in bytes: UnsafeMutableRawBufferPointer) {
        self.init(ipv4: bytes.loadBigEndianUInt32(at: offset))
    }

    /// Reads an IPv6 address (16 bytes) at `offset`.
    init(ipv6At offset: Int, in bytes: UnsafeMutableRawBufferPointer) {
        self.init(high: bytes.loadBigEndianUInt64(at: offset), low: bytes.loadBigEndianUInt64(at: offset + 8))
    }

    /// Writes the IPv4 form (4 bytes) at `offset`; the address must be IPv4.
    func storeIPv4(at offset: Int, in bytes: UnsafeMutableRawBufferPointer) {
        bytes.storeBigEndian(UInt32(truncatingIfNeeded: low), at: offset)
    }

    /// Writes the IPv6 form (16 bytes) at `offset`.
    func storeIPv6(at offset: Int, in bytes: UnsafeMutableRawBufferPointer) {
        bytes.storeBigEndian(high, at: offset)
        bytes.storeBigEndian(low, at: offset + 8)
    }
}

extension IPAddress: Comparable {
    public static func < (lhs: IPAddress, rhs: IPAddress) -> Bool {
        (lhs.high, lhs.low) < (rhs.high, rhs.low)
    }
}

extension IPAddress {
    /// The network-order bytes: 4 for an IPv4 address, else 16 (the inverse of `init(bytes:)`).
    public var bytes: [UInt8] {
        let words = isIPv4 ? [UInt64(low) << 32] : [high, low]
        return words.flatMap { word in (0..<(isIPv4 ? 4 : 8)).map { UInt8(truncatingIfNeeded: word >> (56 - 8 * $0)) } }
    }

    /// An address from 4 (IPv4) or 16 (IPv6, or IPv4-mapped) network-order bytes, as
    /// conntrack, sock_diag and the socket datapath's BPF maps hold them; nil for another count.
    public init?<Bytes: Collection>(bytes: Bytes) where Bytes.Element == UInt8 {
        switch bytes.count {
        case 4:
            self.init(ipv4: bytes.reduce(UInt32(0)) { $0 << 8 | UInt32($1) })
        case 16:
            self.init(high: bytes.prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) },
                      low: bytes.suffix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) })
        default: return nil
        }
    }
}
