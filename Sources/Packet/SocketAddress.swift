

/// An IPv4 or IPv6 socket address as a program hands it to bind() or connect(), read from
/// its bytes (struct sockaddr_in / sockaddr_in6) and written back with another port. Used
/// on both sides of `vpm exec`: the supervisor reads the program's, the engine builds the
/// one it binds.
/// Anything else (AF_UNIX, AF_NETLINK, too short) is not ours: `init?` returns nil.
public struct SocketAddress: Equatable, Sendable, CustomStringConvertible {
    public enum Family: UInt16, Sendable { case ipv4 = 2, ipv6 = 10 }

    enum Field {
        static let family = 0, port = 2
        static let ipv4Address = 4, ipv4Length = 16
        static let ipv6FlowInfo = 4, ipv6Address = 8, ipv6ScopeID = 24, ipv6Length = 28
    }

    /// The shortest address it reads (sockaddr_in).
    public static let minimumLength = Field.ipv4Length

    /// The address bytes as the program wrote them (16 or 28), so what is not the port
    /// (IPv6 flow info, scope id) goes back unchanged.
    public private(set) var bytes: [UInt8]

    public init?(bytes input: some Collection<UInt8>) {
        let bytes = Array(input)
        guard bytes.count >= 2 else { return nil }
        let family = UInt16(bytes[0]) | UInt16(bytes[1]) << 8  // host order (little-endian here)
        switch Family(rawValue: family) {
        case .ipv4? where bytes.count >= Field.ipv4Length: self.bytes = Array(bytes[0..<Field.ipv4Length])
        case .ipv6? where bytes.count >= Field.ipv6Length: self.bytes = Array(bytes[0..<Field.ipv6Length])
        default: return nil
        }
    }

    /// `address`:`port` of the family the address needs (mapped IPv4 as IPv4).
    public init(_ address: IPAddress, port: UInt16, family: Family? = nil) {
        let family = family ?? (address.isIPv4 ? .ipv4 : .ipv6)
        var bytes = [UInt8](repeating: 0, count: family == .ipv4 ? Field.ipv4Length : Field.ipv6Length)
        bytes[0] = UInt8(truncatingIfNeeded: family.rawValue)
        bytes[1] = UInt8(truncatingIfNeeded: family.rawValue >> 8)
        if family == .ipv4 {
            let value = address.ipv4Value ?? 0
            for index in 0..<4 { bytes[Field.ipv4Address + index] = UInt8(truncatingIfNeeded: value >> (24 - 8 * index)) }
        } else {
            for index in 0..<8 {
                let group = address.group(index)
                bytes[Field.ipv6Address + 2 * index] = UInt8(group >> 8)
                bytes[Field.ipv6Address + 2 * index + 1] = UInt8(truncatingIfNeeded: group)
            }
        }
        self.bytes = bytes
        self.port = port
    }

    public var family: Family { bytes.count == Field.ipv4Length ? .ipv4 : .ipv6 }

    public var port: UInt16 {
        get { UInt16(bytes[Field.port]) << 8 | UInt16(bytes[Field.port + 1]) }
        set {
            bytes[Field.port] = UInt8(newValue >> 8)
            bytes[Field.port + 1] = UInt8(truncatingIfNeeded: newValue)
        }
    }

    /// The address, IPv4 as IPv4-mapped (Packet's convention).
    public var address: IPAddress {
        if family == .ipv4 {
            let value = bytes[Field.ipv4Address..<Field.ipv4Address + 4].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
            return IPAddress(ipv4: value)
        }
        let slice = bytes[Field.ipv6Address..<Field.ipv6Address + 16]
        let high = slice.prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        let low = slice.suffix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        return IPAddress(high: high, low: low)
    }

    /// `a.b.c.d:port` or `[v6]:port`.
    public var description: String {
        address.endpoint(port)
    }
}
