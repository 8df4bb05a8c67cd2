import Control
import Decision
import Netfilter
import Packet
import Policy

/// Only a connection's first packet passes through the engine; it leaves unchanged with
/// the decision's mark (`KernelMark`), and kernel NAT (`KernelNAT`, conntrack) carries the
/// connection.
///
/// The packet was queued from a NAT chain (`RuleSet.firstPacket`), so a decision's verdict is
/// REPEAT: the NAT hook runs its chains again, the queue rule lets the marked packet by, and
/// `KernelNAT` translates it (or refuses it, by the refuse mark). ACCEPT would go on after the
/// NAT hook and skip those chains; it is kept for packets that are not vpm's.
struct KernelDatapath: PacketDatapath {
    var kind: Datapath { .kernel }

    /// NAT before the rules that queue: a marked SYN must find its translation.
    func installRules(_ configuration: Configuration) throws -> Bool {
        let created: Bool
        do { created = try KernelNAT(configuration).install() } catch {
            throw ControlError("cannot install the nft table inet \(KernelNAT.table): \(error) (see `vpm probe`; --datapath userspace needs no nft)")
        }
        do { try RuleSet.firstPacket(configuration).install() } catch {
            if created { KernelNAT.remove() }
            throw ControlError("cannot install the iptables rules: \(error)")
        }
        return created
    }

    func script(_ configuration: Configuration) -> String {
        RuleSet.firstPacket(configuration).script() + "nft -f - <<'EOF'\n" + KernelNAT(configuration).script + "EOF\n"
    }

    func session(_ context: DatapathContext) throws -> any DatapathSession {
        try KernelSession(self, context: context)
    }

    func verdict(for decision: Decision, packet: inout IPPacket?, payload: UnsafeMutableRawBufferPointer,
                 checksum: ChecksumState, counters: inout EngineCounters) -> Verdict {
        switch decision {
        case .accept: return .accept
        case .toVirtualPort(let decided), .admit(let decided):
            counters.marked &+= 1
            return Verdict(.repeat, mark: KernelMark(decided).value)
        case .toInitialPort(let port):
            // Replies are not queued on this datapath; one that is gets the same rewrite.
            return CommonVerdict.toInitialPort(port, &packet, payload, checksum: checksum, counters: &counters)
        case .refuse: return Verdict(.repeat, mark: RuleSet.refuseMark)
        case .drop: return .drop
        case .hold: return .hold
        }
    }
}
