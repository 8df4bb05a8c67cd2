/// How one NFQUEUE queue is bound and configured.
public struct QueueConfiguration: Sendable, Equatable {
    /// The `--queue-num` of the iptables NFQUEUE rule.
    public var queueNumber: UInt16
    /// Bytes of each packet copied to userspace; the kernel caps it at `largestCopy`. A
    /// longer packet arrives as a truncated copy, which must never be sent back.
    public var copyRange: UInt32 = 0xFFFF
    /// The longest packet NFQUEUE copies whole: 0xFFFF less the netlink attribute header
    /// (NFQNL_MAX_COPY_RANGE). Only loopback (MTU 65,536) makes longer segments: a
    /// full-sized one is 65,535 bytes over IPv4, 65,536 over IPv6.
    public static let largestCopy = 0xFFFF - 4
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
