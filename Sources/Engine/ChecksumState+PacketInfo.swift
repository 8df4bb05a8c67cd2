public import Netfilter
public import Packet

extension ChecksumState {
    /// What the kernel says of a queued packet's transport checksum: NFQA_SKB_CSUMNOTREADY
    /// means the field holds only a partial sum (recompute); otherwise it is complete (update).
    public init(_ info: PacketInfo) {
        self = info.contains(.checksumNotReady) ? .partial : .complete
    }
}
