/// What carries a decided connection's packets (docs/datapaths.md).
public enum Datapath: String, Sendable, CaseIterable, CustomStringConvertible {
    /// Every packet of a multiplexed flow passes through the engine, which rewrites its
    /// ports and checksums (raw table, NOTRACK).
    case userspace
    /// Only a connection's first packet passes through the engine; it leaves with a mark
    /// (`KernelMark`) and the kernel's NAT (nft table `inet vpm`, conntrack) carries the rest.
    case kernel

    public var description: String { rawValue }
}
