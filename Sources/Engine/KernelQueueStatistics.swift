import Foundation

/// One line of /proc/net/netfilter/nfnetlink_queue: what the kernel counted for a queue.
struct KernelQueueStatistics: Equatable {
    var queueTotal: UInt64
    /// Dropped because the queue was full (queue maxlen).
    var queueDropped: UInt64
    /// Dropped because the netlink socket could not take them (ENOBUFS on our side).
    var userDropped: UInt64

    /// Columns: queue, portid, queue_total, copy_mode, copy_range, queue_dropped,
    /// user_dropped, id_sequence, 1.
    static func parse(_ text: String, queue: UInt16) -> KernelQueueStatistics? {
        for line in text.split(separator: "\n") {
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).compactMap { UInt64($0) }
            guard fields.count >= 7, fields[0] == UInt64(queue) else { continue }
            return KernelQueueStatistics(queueTotal: fields[2], queueDropped: fields[5], userDropped: fields[6])
        }
        return nil
    }

    static func read(queue: UInt16) -> KernelQueueStatistics? {
        guard let text = try? String(contentsOfFile: "/proc/net/netfilter/nfnetlink_queue", encoding: .utf8) else {
            return nil
        }
        return parse(text, queue: queue)
    }
}
