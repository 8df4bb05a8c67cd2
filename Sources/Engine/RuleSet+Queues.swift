import Packet
import Policy

extension RuleSet {
    /// Which of a queued packet's ports is its flow's client port. The engine rewrites only
    /// the other one (initial port ↔ virtual port), so the client port is the same in both
    /// directions and at every hook: on the way in it is the source, on the way back the
    /// destination.
    enum ClientPort {
        case source, destination
    }

    /// The NFQUEUE targets of a configuration's queues, `queue` … `queue + queues - 1`.
    ///
    /// With several queues, a packet's queue is chosen by its flow's client port, so that
    /// both directions of a flow meet on one queue (one engine thread) and one client's
    /// connections still spread over the threads. The kernel's own `--queue-balance` hashes
    /// only the two addresses: every flow of one client address would share one queue.
    ///
    /// The port's bits 1 and up pick one of `buckets` (a power of two, at most
    /// `maximumBuckets`), tested with `-m u32`, one rule per bucket, the last one catching
    /// the rest. Bit 0 is left out: Linux gives a host's connect()ed sockets ports of one
    /// parity. A bucket with several queues (queues beyond the buckets, or not a power of
    /// two) spreads its flows with `--queue-balance`, by address only, so one client reaches
    /// at most `maximumBuckets` queues. IPv6 is tested only where TCP or UDP follows the
    /// fixed header; a packet with extension headers goes to the last bucket.
    struct QueueTargets {
        /// Each bucket costs one u32 test on the packets that pass it.
        static let maximumBuckets = 8

        let first: Int
        let count: Int

        init(_ configuration: Configuration) {
            self.init(first: Int(configuration.queue), count: configuration.queues)
        }

        init(first: Int, count: Int) {
            self.first = first
            self.count = count
        }

        /// The largest power of two that is at most `count` and `maximumBuckets`.
        var buckets: Int { Configuration.largestPowerOfTwo(atMost: min(count, Self.maximumBuckets)) }

        /// Bucket `index`'s queues: its share of `count`, in order.
        func queues(ofBucket index: Int) -> ClosedRange<Int> {
            (first + index * count / buckets)...(first + (index + 1) * count / buckets - 1)
        }

        func target(ofBucket index: Int) -> [String] {
            let queues = queues(ofBucket: index)
            return queues.count == 1
                ? ["-j", "NFQUEUE", "--queue-num", "\(queues.lowerBound)"]
                : ["-j", "NFQUEUE", "--queue-balance", "\(queues.lowerBound):\(queues.upperBound)"]
        }

        /// The u32 test for "the client port is in bucket `index`", for one family.
        func test(bucket index: Int, client: ClientPort, transport: TransportProtocol, tool: String) -> [String] {
            // The 32-bit word at the transport header's start holds the source port (high
            // half) and the destination port (low half); shift out bit 0 of the port.
            let shift = client == .source ? 17 : 1
            let bits = ">>\(shift)&0x\(String(buckets - 1, radix: 16))=0x\(String(index, radix: 16))"
            let test = tool == "iptables"
                // IPv4: the header length from the first word, then the word there.
                ? "0>>22&0x3C@0" + bits
                // IPv6: the next header (byte 6) is the transport itself; it starts at 40.
                : "4>>8&0xFF=0x\(String(transport.rawValue, radix: 16))&&40" + bits
            return ["-m", "u32", "--u32", test]
        }

        /// The rules that queue packets matching `match` in `table`/`chain`: one per bucket.
        func rules(table: String, chain: String, match: [String], client: ClientPort,
                   transport: TransportProtocol, tool: String?) -> [Rule] {
            let last = buckets - 1
            var rules: [Rule] = []
            for family in tool.map({ [$0] }) ?? RuleSet.tools where last > 0 {
                for index in 0..<last {
                    rules.append(Rule(table: table, chain: chain,
                                      arguments: match + test(bucket: index, client: client, transport: transport, tool: family)
                                          + target(ofBucket: index),
                                      tool: family))
                }
            }
            rules.append(Rule(table: table, chain: chain, arguments: match + target(ofBucket: last), tool: tool))
            return rules
        }
    }
}
