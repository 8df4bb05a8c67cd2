public import Packet

/// One element of the sk_lookup program's rule trie (`vpm_rules`, bpf/steer.bpf.c): clients of
/// a source rule, dialing an initial port, go to the sockets in `slot` (IPv4) and `slot + 1`
/// (IPv6). Keys compare bit by bit after the prefix length: protocol, initial port, client
/// address (IPv4-mapped), client port.
public struct SteeringRule: Hashable, Sendable, Comparable {
    public var transport: TransportProtocol
    public var initialPort: UInt16
    /// The client network, IPv4 as ::ffff:a.b.c.d, and its length over 128 bits.
    public var network: IPAddress
    public var length: Int
    /// The one client port the rule covers (only with `length` 128), or nil.
    public var clientPort: UInt16?
    public var slot: UInt32

    public init(transport: TransportProtocol, initialPort: UInt16, network: IPAddress, length: Int, clientPort: UInt16?, slot: UInt32) {
        self.transport = transport
        self.initialPort = initialPort
        self.network = network
        self.length = length
        self.clientPort = clientPort
        self.slot = slot
    }

    /// The key's size in the map: prefix length (4), protocol, reserved, port (2), address
    /// (16), client port (2), padding (2).
    public static let keySize = 28

    /// The trie's key: the bits the rule covers, the rest zero (the kernel compares only
    /// `prefixlen` bits, but a key with stray bits would be a second element).
    public var key: [UInt8] {
        var bytes = [UInt8](repeating: 0, count: Self.keySize)
        let bits = 32 + length + (clientPort == nil ? 0 : 16)
        withUnsafeBytes(of: UInt32(bits).littleEndian) { bytes.replaceSubrange(0..<4, with: $0) }
        bytes[4] = transport.rawValue
        bytes[6] = UInt8(initialPort >> 8)
        bytes[7] = UInt8(initialPort & 0xFF)
        let masked = Self.masked(network, length: length)
        for index in 0..<8 {
            bytes[8 + index] = UInt8(truncatingIfNeeded: masked.high >> (56 - 8 * index))
            bytes[16 + index] = UInt8(truncatingIfNeeded: masked.low >> (56 - 8 * index))
        }
        if let clientPort {
            bytes[24] = UInt8(clientPort >> 8)
            bytes[25] = UInt8(clientPort & 0xFF)
        }
        return bytes
    }

    /// A rule's key read back from the map (`SocketSteering.rules()`), without its slot.
    public init?(key bytes: [UInt8], slot: UInt32) {
        guard bytes.count == Self.keySize, let transport = TransportProtocol(rawValue: bytes[4]) else { return nil }
        let bits = Int(UInt32(bytes[0]) | UInt32(bytes[1]) << 8 | UInt32(bytes[2]) << 16 | UInt32(bytes[3]) << 24)
        guard bits >= 32, bits <= 176 else { return nil }
        self.init(transport: transport, initialPort: UInt16(bytes[6]) << 8 | UInt16(bytes[7]),
                  network: IPAddress(bytes: bytes[8..<24])!, length: min(bits - 32, 128),
                  clientPort: bits > 160 ? UInt16(bytes[24]) << 8 | UInt16(bytes[25]) : nil, slot: slot)
    }

    static func masked(_ address: IPAddress, length: Int) -> IPAddress {
        let highMask: UInt64 = length >= 64 ? ~0 : length == 0 ? 0 : ~0 << (64 - length)
        let lowMask: UInt64 = length >= 128 ? ~0 : length <= 64 ? 0 : ~0 << (128 - length)
        return IPAddress(high: address.high & highMask, low: address.low & lowMask)
    }

    /// Rules compare by key: one key holds one slot.
    public static func < (lhs: SteeringRule, rhs: SteeringRule) -> Bool { lhs.key.lexicographicallyPrecedes(rhs.key) }
}

/// The sockets of one instance in the socket map: its IPv4 socket at `slot`, its IPv6 one
/// at `slot + 1`. A function of the virtual port, so an engine that takes over an earlier
/// one's maps finds the same instance in the same place.
public enum SteeringSlot {
    public static func base(transport: TransportProtocol, virtualPort: UInt16) -> UInt32 {
        (transport == .udp ? 1 << 17 : 0) | UInt32(virtualPort) << 1
    }

    /// Virtual port 0's slots, which no instance can have: a rule that leads here is a client
    /// of an AID with no instance on the port, which the program refuses as such (no socket),
    /// not as a client of no AID (no rule).
    public static let vacant = base(transport: .tcp, virtualPort: 0)
}
