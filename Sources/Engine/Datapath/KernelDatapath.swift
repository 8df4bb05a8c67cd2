import Decision
import Netfilter
import Packet

/// Only a connection's first packet passes through the engine; it leaves unchanged with
/// the decision's mark (`KernelMark`), and kernel NAT (`KernelNAT`, conntrack) carries the
/// connection.
struct KernelDatapath: PacketDatapath {
    var kind: Datapath { .kernel }

    func verdict(for decision: Decision, payload: UnsafeMutableRawBufferPointer, checksum: ChecksumState,
                 counters: inout EngineCounters) -> Verdict {
        switch decision {
        case .accept: return .accept
        case .toVirtualPort(let decided), .admit(let decided):
            counters.marked &+= 1
            return Verdict(.accept, mark: KernelMark(decided).value)
        case .toInitialPort(let port):
            // Replies are not queued on this datapath; one that is gets the same rewrite.
            return CommonVerdict.toInitialPort(port, payload, checksum: checksum, counters: &counters)
        case .refuse: return CommonVerdict.refused
        case .drop: return .drop
        case .hold: return .hold
        }
    }
}
