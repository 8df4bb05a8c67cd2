import Foundation
import Packet

/// Which local ports have sockets in this network namespace, and their inodes, from
/// /proc/net/{tcp,tcp6,udp,udp6}. A virtual port whose instance closed its last socket (or
/// whose processes all exited, which closes them) no longer appears here: that is how the
/// engine notices, without relying on the program to say goodbye. The inodes tell the
/// instance's own sockets from another program's on the same port.
struct SocketTable {
    var tcp: [UInt16: Set<UInt64>] = [:]
    var udp: [UInt16: Set<UInt64>] = [:]

    static func read() -> SocketTable {
        var table = SocketTable()
        for file in ["tcp", "tcp6"] { table.tcp.merge(sockets(file)) { $0.union($1) } }
        for file in ["udp", "udp6"] { table.udp.merge(sockets(file)) { $0.union($1) } }
        return table
    }

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
        for line in text.split(separator: "\n").dropFirst() {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count > 9, let colon = fields[1].lastIndex(of: ":"),
                  let port = UInt16(fields[1][fields[1].index(after: colon)...], radix: 16) else { continue }
            sockets[port, default: []].insert(UInt64(fields[9]) ?? 0)
        }
        return sockets
    }
}
