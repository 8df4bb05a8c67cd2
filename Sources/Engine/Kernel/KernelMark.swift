public import Decision
public import FlowTable

/// The packet mark with which the kernel datapath's decision leaves the engine; the nft NAT
/// rule turns it into the translation and copies it into the conntrack entry (`ct mark`),
/// where `conntrack -L` shows it and a restarted engine reads it back.
///
///     bits 31-28  0x5           decided by vpm (the refuse mark 0x76706d01 starts with 7)
///     bits 27-26  mode          0 source-routed, 1 local, 2 cooperative, 3 cooperative
///                               through a fleet's service address
///     bits 25-16  AID slot      the AID's slot (`AIDSlots`: 1 + its position in `applications:`
///                               at start, a free one for applications a reload adds and
///                               for tenants); 0 unknown
///                 (mode 3: the host slot, whose address the map `service4`/`service6` holds)
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

    /// Marks of connections to a service address (mode 3): the nft rule that swaps the
    /// service's address for the host's matches `mark & serviceMask == serviceTag`, and
    /// looks the host up by `mark & hostKeyMask`.
    public static let serviceMask: UInt32 = 0xFC00_0000
    public static let serviceTag: UInt32 = 0x5C00_0000
    public static let hostKeyMask: UInt32 = 0x0FFF_0000

    public var mode: FlowMode
    public var slot: Int
    public var virtualPort: UInt16
    /// Mode 3: the host slot (then `slot`, the AID's, is 0: the bits are the host's).
    public var hostSlot: Int

    public init(mode: FlowMode, slot: Int, virtualPort: UInt16, hostSlot: Int = 0) {
        self.mode = mode
        self.hostSlot = hostSlot <= Self.maximumSlot && hostSlot >= 0 ? hostSlot : 0
        self.slot = self.hostSlot > 0 ? 0 : slot <= Self.maximumSlot && slot >= 0 ? slot : 0
        self.virtualPort = virtualPort
    }

    /// The mark of a decision.
    public init(_ decided: Decided) {
        self.init(mode: decided.mode, slot: decided.aidSlot, virtualPort: decided.virtualPort, hostSlot: decided.hostSlot)
    }

    /// The key of a host slot in the maps `service4`/`service6`.
    public static func hostKey(_ slot: Int) -> UInt32 { 0x0C00_0000 | UInt32(slot) << 16 }

    /// Reads a mark; nil unless it carries the tag.
    public init?(_ value: UInt32) {
        guard value & Self.tagMask == Self.tag else { return nil }
        let bits = Int((value >> 16) & 0x3FF)
        (slot, hostSlot) = (bits, 0)
        switch (value >> 26) & 0x3 {
        case 0: mode = .source
        case 1: mode = .local
        case 2: mode = .cooperative
        default: (mode, slot, hostSlot) = (.cooperative, 0, bits)
        }
        virtualPort = UInt16(truncatingIfNeeded: value)
    }

    public var value: UInt32 {
        if hostSlot > 0 { return Self.serviceTag | UInt32(hostSlot) << 16 | UInt32(virtualPort) }
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
