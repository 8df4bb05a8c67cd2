import Foundation
import Packet

/// Which local ports have sockets in this network namespace, from /proc/net/{tcp,tcp6,udp,udp6}.
/// A virtual port whose instance closed its last socket (or whose processes all exited,
/// which closes them) no longer appears here: that is how the engine notices, without
/// relying on the program to say goodbye.
struct SocketTable {
    var tcp: Set<UInt16> = []
    var udp: Set<UInt16> = []

    static func read() -> SocketTable {
        var table = SocketTable()
        for file in ["tcp", "tcp6"] { table.tcp.formUnion(localPorts(file)) }
        for file in ["udp", "udp6"] { table.udp.formUnion(localPorts(file)) }
        return table
    }

    func contains(_ port: UInt16, transport: TransportProtocol) -> Bool {
        transport == .udp ? udp.contains(port) : tcp.contains(port)
    }

    /// Lines look like `  0: 0100007F:4E21 00000000:0000 0A ...`: the local port is the hex after ':'.
    static func localPorts(_ file: String) -> Set<UInt16> {
        guard let text = try? String(contentsOfFile: "/proc/net/\(file)", encoding: .utf8) else { return [] }
        return parse(text)
    }

    static func parse(_ text: String) -> Set<UInt16> {
        var ports = Set<UInt16>()
        for line in text.split(separator: "\n").dropFirst() {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count > 2, let colon = fields[1].lastIndex(of: ":"),
                  let port = UInt16(fields[1][fields[1].index(after: colon)...], radix: 16) else { continue }
            ports.insert(port)
        }
        return ports
    }
}
