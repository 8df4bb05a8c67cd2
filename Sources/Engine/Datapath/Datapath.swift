import Netfilter
import Steering
public import Policy

/// What carries a decided connection's packets (docs/datapaths.md).
public enum Datapath: String, Sendable, CaseIterable, CustomStringConvertible {
    /// Every packet of a multiplexed flow passes through the engine, which rewrites its
    /// ports and checksums (raw table, NOTRACK).
    case userspace
    /// Only a connection's first packet passes through the engine; it leaves with a mark
    /// (`KernelMark`) and the kernel's NAT (nft table `inet vpm`, conntrack) carries the rest.
    case kernel
    /// The kernel datapath, but a source-routed TCP connection is neither translated nor
    /// tracked: a BPF sk_lookup program (`SocketSteering`) hands it to its AID's listening
    /// socket, and its packets bypass conntrack. UDP, cooperative and local connections go
    /// as on the kernel datapath.
    case socket

    public var description: String { rawValue }
}

extension Datapath {
    /// Why this host cannot carry the kernel datapath, or nil. nft must build the whole NAT
    /// table (a throwaway copy, run with `prefix`, e.g. `ip netns exec NS`; skipped with
    /// `checkingNAT` false, for an engine that leaves the rules to the operator), and
    /// conntrack must answer a dump: binding its socket succeeds even without
    /// nf_conntrack_netlink. Shared by `vpm run` (fallback) and `vpm probe`.
    public static func kernelUnavailableReason(
        configuration: Configuration = KernelNAT.probeConfiguration, prefix: [String] = [], checkingNAT: Bool = true
    ) -> String? {
        if checkingNAT, let reason = KernelNAT.unavailableReason(configuration: configuration, prefix: prefix) { return reason }
        do { try Conntrack().forEachEntry(mark: KernelMark.tag, mask: KernelMark.tagMask) { _ in } } catch {
            return "conntrack's netlink interface does not answer: \(error)"
        }
        return nil
    }
}

extension Datapath {
    /// Why this kernel cannot run the socket datapath's sk_lookup program (loaded, never
    /// attached), or nil. Shared by `vpm run` (fallback to the kernel datapath) and `vpm probe`.
    public static func socketUnavailableReason() -> String? { SocketSteering.unavailableReason() }
}
