public import Decision
public import FlowTable

/// The packet mark with which the kernel datapath's decision leaves the engine; the nft NAT
/// rule turns it into the translation and copies it into the conntrack entry (`ct mark`),
/// where `conntrack -L` shows it and a restarted engine reads it back.
///
///     bits 31-28  0x5           decided by vpm (the refuse mark 0x76706d01 starts with 7)
///     bits 27-26  mode          0 source-routed, 1 local, 2 cooperative
///     bits 25-16  AID slot      1 + the AID's position in `applications:`; 0 unknown
///     bits 15-0   virtual port  the port the connection is translated to (or admitted on)
///
/// The nft map `vport` is keyed by `mark & 0xf000ffff` (tag + port), so any mode and AID
/// slot reach the same element.
public struct KernelMark: Sendable, Equatable, CustomStringConvertible {
    public static let tag: UInt32 = 0x5000_0000
    public static let tagMask: UInt32 = 0xF000_0000
    /// What the nft map's key keeps of a mark: the tag and the virtual port.
    public static let mapKeyMask: UInt32 = 0xF000_FFFF
    /// The largest AID slot (10 bits).
    public static let maximumSlot = PacketDecider.maximumSlot

    public var mode: FlowMode
    public var slot: Int
    public var virtualPort: UInt16

    public init(mode: FlowMode, slot: Int, virtualPort: UInt16) {
        self.mode = mode
        self.slot = slot <= Self.maximumSlot && slot >= 0 ? slot : 0
        self.virtualPort = virtualPort
    }

    /// The mark of a decision.
    public init(_ decided: Decided) {
        self.init(mode: decided.mode, slot: decided.aidSlot, virtualPort: decided.virtualPort)
    }

    /// Reads a mark; nil unless it carries the tag.
    public init?(_ value: UInt32) {
        guard value & Self.tagMask == Self.tag else { return nil }
        switch (value >> 26) & 0x3 {
        case 0: mode = .source
        case 1: mode = .local
        case 2: mode = .cooperative
        default: return nil
        }
        slot = Int((value >> 16) & 0x3FF)
        virtualPort = UInt16(truncatingIfNeeded: value)
    }

    public var value: UInt32 {
        let modeBits: UInt32 = switch mode {
        case .source: 0
        case .local: 1
        case .cooperative: 2
        }
        return Self.tag | modeBits << 26 | UInt32(slot) << 16 | UInt32(virtualPort)
    }

    /// The nft map key for a virtual port.
    public static func mapKey(_ virtualPort: UInt16) -> UInt32 { tag | UInt32(virtualPort) }

    public var description: String { "0x" + String(value, radix: 16) }
}
