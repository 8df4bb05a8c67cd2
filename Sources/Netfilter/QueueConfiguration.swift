/// How one NFQUEUE queue is bound and configured.
public struct QueueConfiguration: Sendable, Equatable {
    /// The `--queue-num` of the iptables NFQUEUE rule.
    public var queueNumber: UInt16
    /// Bytes of each packet copied to userspace. 0xFFFF covers a whole GSO super-packet;
    /// anything shorter means truncated copies that must never be sent back.
    public var copyRange: UInt32 = 0xFFFF
    /// NFQA_CFG_F_GSO: receive one 64 KB super-packet instead of ~45 MTU-sized ones.
    /// The price: checksums arrive partial (NFQA_SKB_CSUMNOTREADY) and must be recomputed.
    public var segmentationOffload: Bool = true
    /// NFQA_CFG_F_FAIL_OPEN: when the queue is full the kernel accepts instead of dropping.
    public var failOpen: Bool = false
    /// Packets the kernel holds for this queue before it drops (or fails open).
    public var maximumLength: UInt32 = 8192
    /// Socket receive buffer. Forced past rmem_max when the process has CAP_NET_ADMIN.
    public var receiveBufferSize: Int = 16 << 20

    public init(queueNumber: UInt16) {
        self.queueNumber = queueNumber
    }
}
