public import Decision
public import Netfilter
public import Packet

extension ChecksumState {
    /// What the kernel says of a queued packet's transport checksum: NFQA_SKB_CSUMNOTREADY
    /// means the field holds only a partial sum (recompute); otherwise it is complete (update).
    public init(_ info: PacketInfo) {
        self = info.contains(.checksumNotReady) ? .partial : .complete
    }
}

extension PacketInput {
    /// A packet the kernel queued: PREROUTING is arriving, OUTPUT leaving (over lo when its
    /// output interface is 1, the loopback's index in every network namespace).
    public init(_ queued: QueuedPacket) {
        let hook: Hook = switch queued.hook {
        case 0: .arriving
        case 3: .leaving(viaLoopback: queued.outputInterface == 1)
        default: .other
        }
        self.init(id: queued.id, hook: hook, payload: queued.payload, isTruncated: queued.isTruncated,
                  checksum: ChecksumState(queued.info))
    }
}
