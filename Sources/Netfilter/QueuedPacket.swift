/// One packet handed to userspace by the kernel. `payload` points into the queue's
/// receive buffer: it is valid only inside the handler, and rewriting it in place
/// is how a modified packet is returned (zero-copy).
public struct QueuedPacket: @unchecked Sendable {
    /// The kernel's id for this packet; every packet needs exactly one verdict.
    public var id: UInt32
    /// Link-layer protocol (0x0800 IPv4, 0x86DD IPv6) in host order.
    public var hardwareProtocol: UInt16
    /// Netfilter hook number (0 PREROUTING, 1 INPUT, 2 FORWARD, 3 OUTPUT, 4 POSTROUTING).
    public var hook: UInt8
    /// The packet mark, if it has one.
    public var mark: UInt32?
    /// The network-layer packet as copied by the kernel.
    public var payload: UnsafeMutableRawBufferPointer
    /// Original length of the packet; larger than `payload.count` when the copy was truncated.
    public var originalLength: Int
    public var info: PacketInfo
    public var inputInterface: UInt32?
    public var outputInterface: UInt32?

    /// True when the kernel copied less than the whole packet. Such a copy must never be
    /// sent back as a new payload: the kernel would trim the real packet to it.
    public var isTruncated: Bool { payload.count < originalLength }

    public init(
        id: UInt32, hardwareProtocol: UInt16, hook: UInt8, mark: UInt32?,
        payload: UnsafeMutableRawBufferPointer, originalLength: Int, info: PacketInfo,
        inputInterface: UInt32? = nil, outputInterface: UInt32? = nil
    ) {
        self.id = id
        self.hardwareProtocol = hardwareProtocol
        self.hook = hook
        self.mark = mark
        self.payload = payload
        self.originalLength = originalLength
        self.info = info
        self.inputInterface = inputInterface
        self.outputInterface = outputInterface
    }
}

/// NFQA_SKB_INFO flags: what the kernel says about the packet's checksum and segmentation.
public struct PacketInfo: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// NFQA_SKB_CSUMNOTREADY: the transport checksum field holds only a partial sum.
    public static let checksumNotReady = PacketInfo(rawValue: 1 << 0)
    /// NFQA_SKB_GSO: a GSO super-packet (only with NFQA_CFG_F_GSO).
    public static let segmentationOffload = PacketInfo(rawValue: 1 << 1)
    /// NFQA_SKB_CSUM_NOTVERIFIED: the checksum has not been verified yet.
    public static let checksumNotVerified = PacketInfo(rawValue: 1 << 2)
}
