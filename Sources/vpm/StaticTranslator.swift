import Engine
import Netfilter
import Packet

/// One fixed translation, initial port ↔ virtual port, applied to every queued TCP packet:
/// arriving packets to the initial port are moved to the virtual port, leaving packets from
/// the virtual port are moved back. No policy, no flow table: a diagnostic datapath and the
/// smallest real user of Netfilter + Packet.
struct StaticTranslator {
    struct Counters: Codable, Equatable {
        var packets: UInt64 = 0
        var ingressRewritten: UInt64 = 0
        var egressRewritten: UInt64 = 0
        /// Complete checksum present: RFC 1624 incremental update.
        var checksumIncremental: UInt64 = 0
        /// NFQA_SKB_CSUMNOTREADY: full recompute.
        var checksumRecomputed: UInt64 = 0
        /// GSO super-packets (NFQA_SKB_GSO).
        var segmentationOffload: UInt64 = 0
        var passedUnchanged: UInt64 = 0
        /// Packets dropped because they could not be rewritten (truncated, malformed).
        var dropped: UInt64 = 0
    }

    let initialPort: UInt16
    let virtualPort: UInt16
    private(set) var counters = Counters()

    init(initialPort: UInt16, virtualPort: UInt16) {
        self.initialPort = initialPort
        self.virtualPort = virtualPort
    }

    mutating func handle(_ queued: QueuedPacket) -> Verdict {
        counters.packets += 1
        if queued.info.contains(.segmentationOffload) { counters.segmentationOffload += 1 }
        // A truncated copy cannot be sent back, and accepting it unrewritten would leak the
        // virtual port: drop it.
        guard !queued.isTruncated else {
            counters.dropped += 1
            return .drop
        }
        let checksum = ChecksumState(queued.info)
        do {
            var packet = try IPPacket(queued.payload)
            guard packet.transportProtocol == .tcp else {
                counters.passedUnchanged += 1
                return .accept
            }
            if packet.destinationPort == initialPort {
                try packet.setDestinationPort(virtualPort, checksum: checksum)
                counters.ingressRewritten += 1
            } else if packet.sourcePort == virtualPort {
                try packet.setSourcePort(initialPort, checksum: checksum)
                counters.egressRewritten += 1
            } else {
                counters.passedUnchanged += 1
                return .accept
            }
        } catch {
            counters.dropped += 1
            return .drop
        }
        if checksum == .partial { counters.checksumRecomputed += 1 } else { counters.checksumIncremental += 1 }
        return .acceptModified(length: queued.payload.count)
    }
}
