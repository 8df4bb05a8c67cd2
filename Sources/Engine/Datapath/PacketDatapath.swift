import Decision
import Netfilter
import Packet

/// How a decision becomes a verdict: the one place that knows which datapath runs.
/// The userspace datapath rewrites the packet in the queue's buffer; the kernel datapath
/// leaves it unchanged with the decision's mark for kernel NAT. Both answer a refusal with
/// the refuse mark, which their rules turn into a reset.
protocol PacketDatapath: Sendable {
    var kind: Datapath { get }
    /// The verdict for `decision`, applied to `payload` where it changes bytes. Counts what
    /// it did (rewritten, marked, checksums) in `counters`. Allocates nothing.
    func verdict(for decision: Decision, payload: UnsafeMutableRawBufferPointer, checksum: ChecksumState,
                 counters: inout EngineCounters) -> Verdict
}

extension Datapath {
    /// The implementation of this kind of datapath.
    var implementation: any PacketDatapath {
        switch self {
        case .userspace: UserspaceDatapath()
        case .kernel: KernelDatapath()
        }
    }
}

/// The verdicts both datapaths give alike.
enum CommonVerdict {
    static let refused = Verdict(.accept, mark: RuleSet.refuseMark)

    /// Rewrites the packet in place with `change`; on a malformed packet drops it.
    static func rewrite(
        _ payload: UnsafeMutableRawBufferPointer, checksum: ChecksumState, mark: UInt32? = nil, counters: inout EngineCounters,
        _ change: (inout IPPacket, ChecksumState) throws(PacketError) -> Void
    ) -> Verdict {
        do throws(PacketError) {
            var packet = try IPPacket(payload)
            try change(&packet, checksum)
            counters.rewritten &+= 1
            if checksum == .partial { counters.checksumRecomputed &+= 1 } else { counters.checksumIncremental &+= 1 }
            return .acceptModified(length: packet.bytes.count, mark: mark)
        } catch {
            counters.count(dropped: DropReason(error))
            return .drop
        }
    }

    static func toInitialPort(_ port: UInt16, _ payload: UnsafeMutableRawBufferPointer, checksum: ChecksumState,
                              counters: inout EngineCounters) -> Verdict {
        rewrite(payload, checksum: checksum, counters: &counters) { (packet: inout IPPacket, state) throws(PacketError) in
            try packet.setSourcePort(port, checksum: state)
        }
    }
}
