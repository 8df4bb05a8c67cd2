import Foundation
import Netfilter

/// conntrack's own idle timeouts per state (its sysctls in the engine's namespace), which
/// say how long ago a dumped entry saw its last packet: the kernel sets an entry's timeout
/// to its state's whenever a packet comes, and a dump reports what is left of it.
struct ConntrackTimeouts: Equatable {
    /// Seconds, by TCP_CONNTRACK_* state (1 SYN_SENT ... 8 CLOSE, 9 SYN_SENT2).
    var tcp: [UInt8: UInt64]
    var udp: UInt64
    var udpStream: UInt64

    /// The kernel's defaults.
    static let standard = ConntrackTimeouts(
        tcp: [1: 120, 2: 60, 3: 432_000, 4: 120, 5: 60, 6: 30, 7: 120, 8: 10, 9: 120], udp: 30, udpStream: 120)

    /// The namespace's settings; a sysctl that cannot be read keeps the kernel's default.
    static func read(directory: String = "/proc/sys/net/netfilter") -> ConntrackTimeouts {
        func value(_ name: String, _ fallback: UInt64) -> UInt64 {
            guard let text = try? String(contentsOfFile: "\(directory)/nf_conntrack_\(name)", encoding: .utf8),
                  let seconds = UInt64(text.trimmingCharacters(in: .whitespacesAndNewlines)) else { return fallback }
            return seconds
        }
        var timeouts = standard
        let names: [(UInt8, String)] = [(1, "syn_sent"), (2, "syn_recv"), (3, "established"), (4, "fin_wait"),
                                        (5, "close_wait"), (6, "last_ack"), (7, "time_wait"), (8, "close"), (9, "syn_sent")]
        for (state, name) in names { timeouts.tcp[state] = value("tcp_timeout_\(name)", standard.tcp[state] ?? 0) }
        timeouts.udp = value("udp_timeout", standard.udp)
        timeouts.udpStream = value("udp_timeout_stream", standard.udpStream)
        return timeouts
    }

    /// The full timeout of `entry`'s state in milliseconds, nil when unknown.
    func timeout(of entry: ConntrackEntry) -> UInt64? {
        switch entry.protocolNumber {
        case 6: return entry.tcpState.flatMap { tcp[$0] }.map { $0 * 1000 }
        case 17: return (entry.isAssured ? udpStream : udp) * 1000
        default: return nil
        }
    }

    /// Milliseconds since `entry`'s last packet, at most: the dump rounds what is left down
    /// to the second. Nil when the entry or its state's timeout is unknown.
    func idle(_ entry: ConntrackEntry) -> UInt64? {
        guard let full = timeout(of: entry), let left = entry.timeout else { return nil }
        let remaining = UInt64(left) * 1000
        return full > remaining ? full - remaining : 0
    }
}
