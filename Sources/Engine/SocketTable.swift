import Foundation
import Packet

/// Which local ports have sockets in this network namespace, and their inodes, from
/// /proc/net/{tcp,tcp6,udp,udp6}. A virtual port whose instance closed its last socket (or
/// whose processes all exited, which closes them) no longer appears here: that is how the
/// engine notices, without relying on the program to say goodbye. The inodes tell the
/// instance's own sockets from another program's on the same port. TCP connections on a
/// port (accepted by its listener, still open) are counted apart: they keep a draining
/// instance's translation alive after its listener closed.
struct SocketTable {
    var tcp: [UInt16: Set<UInt64>] = [:]
    var udp: [UInt16: Set<UInt64>] = [:]
    /// TCP sockets with the port as their local port in a connection's state (from
    /// SYN-RECEIVED to LAST-ACK; not listening, not TIME-WAIT).
    var tcpConnections: [UInt16: Int] = [:]

    static func read() -> SocketTable {
        var table = SocketTable()
        for file in ["tcp", "tcp6"] {
            guard let text = try? String(contentsOfFile: "/proc/net/\(file)", encoding: .utf8) else { continue }
            table.tcp.merge(parse(text)) { $0.union($1) }
            table.tcpConnections.merge(connections(text)) { $0 + $1 }
        }
        for file in ["udp", "udp6"] { table.udp.merge(sockets(file)) { $0.union($1) } }
        return table
    }

    /// Open TCP connections whose local port is `port`.
    func connections(on port: UInt16) -> Int { tcpConnections[port] ?? 0 }

    /// Whether a socket is on `port`; with `inodes`, one of those sockets.
    func contains(_ port: UInt16, transport: TransportProtocol, inodes: Set<UInt64>? = nil) -> Bool {
        guard let found = transport == .udp ? udp[port] : tcp[port] else { return false }
        guard let inodes else { return true }
        return !found.isDisjoint(with: inodes)
    }

    /// The ports with a socket of `transport`.
    func ports(_ transport: TransportProtocol) -> Set<UInt16> {
        Set((transport == .udp ? udp : tcp).keys)
    }

    func inodes(on port: UInt16, transport: TransportProtocol) -> Set<UInt64> {
        (transport == .udp ? udp[port] : tcp[port]) ?? []
    }

    static func sockets(_ file: String) -> [UInt16: Set<UInt64>] {
        guard let text = try? String(contentsOfFile: "/proc/net/\(file)", encoding: .utf8) else { return [:] }
        return parse(text)
    }

    /// Lines look like `  0: 0100007F:4E21 00000000:0000 0A 00000000:00000000 00:00000000
    /// 00000000  1000 0 123456 ...`: the local port is the hex after ':' in field 1, the
    /// inode is field 9.
    static func parse(_ text: String) -> [UInt16: Set<UInt64>] {
        var sockets: [UInt16: Set<UInt64>] = [:]
        forEachSocket(text) { port, _, inode in sockets[port, default: []].insert(inode) }
        return sockets
    }

    /// Per local port, the TCP sockets in a connection's state (field 3, the kernel's
    /// TCP_* number in hex: ESTABLISHED 01, SYN_RECV 03, FIN_WAIT1 04, FIN_WAIT2 05,
    /// CLOSE_WAIT 08, LAST_ACK 09, CLOSING 0B).
    static func connections(_ text: String) -> [UInt16: Int] {
        var counts: [UInt16: Int] = [:]
        forEachSocket(text) { port, state, _ in
            if [0x01, 0x03, 0x04, 0x05, 0x08, 0x09, 0x0B].contains(state) { counts[port, default: 0] += 1 }
        }
        return counts
    }

    private static func forEachSocket(_ text: String, _ body: (_ port: UInt16, _ state: UInt8, _ inode: UInt64) -> Void) {
        for line in text.split(separator: "\n").dropFirst() {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count > 9, let colon = fields[1].lastIndex(of: ":"),
                  let port = UInt16(fields[1][fields[1].index(after: colon)...], radix: 16) else { continue }
            body(port, UInt8(fields[3], radix: 16) ?? 0, UInt64(fields[9]) ?? 0)
        }
    }
}
