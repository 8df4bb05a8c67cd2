import Foundation

/// `net.netfilter.nf_conntrack_acct` of the engine's network namespace: per-connection
/// packet and byte counts, which `vpm flows` shows for the kernel datapath. Turned on at
/// start, put back as it was at a clean stop.
struct ConntrackAccounting {
    static let path = "/proc/sys/net/netfilter/nf_conntrack_acct"
    /// The value before the engine changed it (nil: it was already on).
    var previous: String?

    static func enable() throws -> ConntrackAccounting {
        let current = try String(contentsOfFile: path, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        guard current != "1" else { return ConntrackAccounting(previous: nil) }
        try "1\n".write(toFile: path, atomically: false, encoding: .utf8)
        return ConntrackAccounting(previous: current)
    }

    func restore() {
        guard let previous else { return }
        try? (previous + "\n").write(toFile: Self.path, atomically: false, encoding: .utf8)
    }
}
