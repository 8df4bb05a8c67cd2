import Control
import Decision
import Netfilter
import Packet
import Policy

/// Every packet of a multiplexed flow passes through the engine, which rewrites its ports
/// and checksums (raw table, NOTRACK; `RuleSet`).
struct UserspaceDatapath: PacketDatapath {
    var kind: Datapath { .userspace }

    func installRules(_ configuration: Configuration) throws -> Bool {
        KernelNAT.remove()  // a killed kernel-datapath engine's table would take our flows
        do { try RuleSet.everyPacket(configuration).install() } catch {
            throw ControlError("cannot install the iptables rules: \(error)")
        }
        return false
    }

    func script(_ configuration: Configuration) -> String {
        RuleSet.everyPacket(configuration).script()
    }

    func session(_ context: DatapathContext) throws -> any DatapathSession {
        UserspaceSession(self, context: context)
    }

    func verdict(for decision: Decision, packet: inout IPPacket?, payload: UnsafeMutableRawBufferPointer,
                 checksum: ChecksumState, counters: inout EngineCounters) -> Verdict {
        switch decision {
        case .accept:
            // Not ours, but on a queue all the same (a local program of no AID on loopback):
            // its segments must fit a copy too, or they are dropped as truncated.
            guard var parsed = packet, parsed.transportProtocol == .tcp, parsed.tcpFlags.contains(.syn),
                  Self.keepSegmentsCopyable(&parsed, checksum: checksum) else { return .accept }
            return .acceptModified(length: parsed.bytes.count, mark: nil)
        case .admit:
            // A negotiated connection arrives on its virtual port already.
            counters.acceptedUnchanged &+= 1
            return .accept
        case .toVirtualPort(let decided):
            // Over lo the packet meets VPM-INPUT's guard, which lets only decided packets
            // reach a virtual port: local mode's carry the decision's mark.
            let mark = decided.mode == .local ? KernelMark(decided).value : nil
            return CommonVerdict.rewrite(&packet, payload, checksum: checksum, mark: mark, counters: &counters) {
                (packet: inout IPPacket, state) throws(PacketError) in
                Self.keepSegmentsCopyable(&packet, checksum: state)
                try packet.setDestinationPort(decided.virtualPort, checksum: state)
            }
        case .toInitialPort(let port):
            return CommonVerdict.rewrite(&packet, payload, checksum: checksum, counters: &counters) {
                (packet: inout IPPacket, state) throws(PacketError) in
                Self.keepSegmentsCopyable(&packet, checksum: state)
                try packet.setSourcePort(port, checksum: state)
            }
        case .refuse: return CommonVerdict.refused
        case .drop: return .drop
        case .hold: return .hold
        }
    }

    /// Every packet of the connection must reach the engine whole, and NFQUEUE copies at
    /// most `QueueConfiguration.largestCopy` bytes: a SYN (either way) announcing a larger
    /// MSS has it lowered, so neither side sends a segment longer than that. Only loopback
    /// connections (local mode) announce one; a full-sized segment over lo would otherwise
    /// arrive truncated, be dropped, be retransmitted the same size, and stall the
    /// connection. Costs one flag test per packet.
    @inline(__always) @discardableResult
    static func keepSegmentsCopyable(_ packet: inout IPPacket, checksum: ChecksumState) -> Bool {
        guard packet.transportProtocol == .tcp, packet.tcpFlags.contains(.syn) else { return false }
        let limit = QueueConfiguration.largestCopy - packet.transportOffset - TCPHeader.minimumLength
        return packet.clampMaximumSegmentSize(to: UInt16(limit), checksum: checksum)
    }
}
