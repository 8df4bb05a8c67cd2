import Decision
import Netfilter
import Packet
import Steering
public import Policy

/// How a decision becomes a verdict: the one place that knows which datapath runs.
/// The userspace datapath rewrites the packet in the queue's buffer; the kernel datapath
/// leaves it unchanged with the decision's mark for kernel NAT. Both answer a refusal with
/// the refuse mark, which their rules turn into a reset.
protocol PacketDatapath: Sendable {
    var kind: Datapath { get }
    /// Installs this datapath's rules (and tables) for `configuration`, replacing any vpm
    /// left; on failure removes what it installed and throws. Returns whether it created a
    /// table that was not there (the kernel datapath's nft table carries running
    /// connections: a failed start removes it only then).
    func installRules(_ configuration: Configuration) throws -> Bool
    /// The same, as commands an operator could run.
    func script(_ configuration: Configuration) -> String
    /// What this datapath sets up around the queue loop for one `vpm run`.
    func session(_ context: DatapathContext) throws -> any DatapathSession
    /// The verdict for `decision`, applied to the packet where it changes bytes (`packet`:
    /// the decider's parsed view of `payload`, if it has one). Counts what it did
    /// (rewritten, marked, checksums) in `counters`. Allocates nothing.
    func verdict(for decision: Decision, packet: inout IPPacket?, payload: UnsafeMutableRawBufferPointer,
                 checksum: ChecksumState, counters: inout EngineCounters) -> Verdict
}

extension Datapath {
    /// The implementation of this kind of datapath.
    var implementation: any PacketDatapath {
        switch self {
        case .userspace: UserspaceDatapath()
        case .kernel: KernelDatapath()
        case .socket: SocketDatapath()
        }
    }

    /// Installs the rules for `configuration` (`vpm run` and `vpm rules install` alike).
    @discardableResult
    public func installRules(_ configuration: Configuration) throws -> Bool {
        try implementation.installRules(configuration)
    }

    /// The rules as a script (`vpm rules print`).
    public func script(_ configuration: Configuration) -> String {
        implementation.script(configuration)
    }

    /// Removes every vpm rule and table, of either datapath (nothing when absent).
    public static func removeRules() {
        SocketSteering.removePins()
        UntrackedPorts.remove()
        RuleSet.remove()
        KernelNAT.remove()
    }
}

/// The verdicts both datapaths give alike.
enum CommonVerdict {
    static let refused = Verdict(.accept, mark: RuleSet.refuseMark)

    /// Rewrites the packet in place with `change`; on a malformed packet drops it.
    static func rewrite(
        _ parsed: inout IPPacket?, _ payload: UnsafeMutableRawBufferPointer, checksum: ChecksumState, mark: UInt32? = nil,
        counters: inout EngineCounters, _ change: (inout IPPacket, ChecksumState) throws(PacketError) -> Void
    ) -> Verdict {
        do throws(PacketError) {
            var packet: IPPacket
            if let parsed { packet = parsed } else { packet = try IPPacket(payload) }
            try change(&packet, checksum)
            counters.rewritten &+= 1
            if checksum == .partial { counters.checksumRecomputed &+= 1 } else { counters.checksumIncremental &+= 1 }
            return .acceptModified(length: packet.bytes.count, mark: mark)
        } catch {
            counters.count(dropped: DropReason(error))
            return .drop
        }
    }

    static func toInitialPort(_ port: UInt16, _ parsed: inout IPPacket?, _ payload: UnsafeMutableRawBufferPointer,
                              checksum: ChecksumState, counters: inout EngineCounters) -> Verdict {
        rewrite(&parsed, payload, checksum: checksum, counters: &counters) { (packet: inout IPPacket, state) throws(PacketError) in
            try packet.setSourcePort(port, checksum: state)
        }
    }
}
