#if canImport(Glibc)
import Glibc
#endif
public import Packet

/// The TCP sockets of this network namespace, from the kernel's sock_diag interface
/// (NETLINK_SOCK_DIAG, inet_diag with tcp_info): how the socket datapath, which has no
/// conntrack entry for its connections, knows their state and counters.
public enum SocketDiagnostics {
    public struct Connection: Equatable, Sendable {
        /// The kernel's TCP state (TCP_ESTABLISHED 1 … TCP_CLOSING 11).
        public var state: UInt8
        public var local: IPAddress
        public var localPort: UInt16
        public var remote: IPAddress
        public var remotePort: UInt16
        /// tcp_info's payload counters (zero for a TIME-WAIT socket, which has none).
        public var bytesReceived: UInt64
        public var bytesAcked: UInt64
        public var segmentsIn: UInt32
        public var segmentsOut: UInt32
        /// The socket's inode (0 for a TIME-WAIT socket).
        public var inode: UInt64 = 0
        /// IPv6 (AF_INET6), or IPv4.
        public var isIPv6: Bool = false
    }

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// Every TCP socket but listeners whose local port is in `localPorts`, both families.
    public static func tcpConnections(localPorts: Set<UInt16>) throws -> [Connection] {
        try sockets(localPorts: localPorts, states: 0xFFF & ~(1 << 10), information: true)
    }

    /// The listening TCP sockets whose local port is in `localPorts`, both families (the
    /// kernel filters by state: a host with many connections costs nothing more).
    public static func tcpListeners(localPorts: Set<UInt16>) throws -> [Connection] {
        try sockets(localPorts: localPorts, states: 1 << 10, information: false)
    }

    private static func sockets(localPorts: Set<UInt16>, states: UInt32, information: Bool) throws -> [Connection] {
        guard !localPorts.isEmpty else { return [] }
        let descriptor = socket(AF_NETLINK, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 4 /* NETLINK_SOCK_DIAG */)
        guard descriptor >= 0 else { throw Failure(description: "cannot open a sock_diag socket: \(String(cString: strerror(errno)))") }
        defer { close(descriptor) }
        var connections: [Connection] = []
        for family in [UInt8(AF_INET), UInt8(AF_INET6)] {
            try dump(descriptor, family: family, states: states, information: information) { connection in
                if localPorts.contains(connection.localPort) { connections.append(connection) }
            }
        }
        return connections
    }

    /// Offsets in the kernel's structures (linux/inet_diag.h, linux/tcp.h).
    private enum Layout {
        static let header = 16  // nlmsghdr
        static let request = 56  // inet_diag_req_v2
        static let message = 72  // inet_diag_msg
        static let infoAttribute: UInt16 = 2  // INET_DIAG_INFO
        static let bytesAcked = 120, bytesReceived = 128, segmentsOut = 136, segmentsIn = 140
    }

    private static func dump(_ descriptor: Int32, family: UInt8, states: UInt32, information: Bool, _ body: (Connection) -> Void) throws {
        var request = [UInt8](repeating: 0, count: Layout.header + Layout.request)
        func put32(_ value: UInt32, at offset: Int) { withUnsafeBytes(of: value.littleEndian) { request.replaceSubrange(offset..<offset + 4, with: $0) } }
        func put16(_ value: UInt16, at offset: Int) { withUnsafeBytes(of: value.littleEndian) { request.replaceSubrange(offset..<offset + 2, with: $0) } }
        put32(UInt32(request.count), at: 0)
        put16(20, at: 4)  // SOCK_DIAG_BY_FAMILY
        put16(0x301, at: 6)  // NLM_F_REQUEST | NLM_F_DUMP
        request[16] = family
        request[17] = UInt8(IPPROTO_TCP)
        request[18] = information ? 1 << (Layout.infoAttribute - 1) : 0  // idiag_ext: INET_DIAG_INFO
        put32(states, at: 20)
        guard request.withUnsafeBytes({ send(descriptor, $0.baseAddress, $0.count, 0) }) == request.count else {
            throw Failure(description: "cannot ask sock_diag: \(String(cString: strerror(errno)))")
        }
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
            if count < 0 {
                if errno == EINTR { continue }
                throw Failure(description: "cannot read sock_diag: \(String(cString: strerror(errno)))")
            }
            var offset = 0
            while offset + Layout.header <= count {
                let length = Int(load32(buffer, offset))
                let type = UInt16(buffer[offset + 4]) | UInt16(buffer[offset + 5]) << 8
                guard length >= Layout.header, offset + length <= count else { return }
                if type == 3 { return }  // NLMSG_DONE
                if type == 2 {  // NLMSG_ERROR
                    let code = Int32(bitPattern: load32(buffer, offset + Layout.header))
                    if code == 0 { return }
                    throw Failure(description: "sock_diag refused the dump: \(String(cString: strerror(-code)))")
                }
                if length >= Layout.header + Layout.message, let connection = parse(buffer, offset + Layout.header, end: offset + length) {
                    body(connection)
                }
                offset += (length + 3) & ~3
            }
        }
    }

    private static func parse(_ bytes: [UInt8], _ at: Int, end: Int) -> Connection? {
        let family = bytes[at]
        func port(_ offset: Int) -> UInt16 { UInt16(bytes[offset]) << 8 | UInt16(bytes[offset + 1]) }
        func address(_ offset: Int) -> IPAddress {
            IPAddress(bytes: bytes[offset..<offset + (family == UInt8(AF_INET) ? 4 : 16)])!
        }
        var connection = Connection(state: bytes[at + 1], local: address(at + 8), localPort: port(at + 4),
                                    remote: address(at + 24), remotePort: port(at + 6),
                                    bytesReceived: 0, bytesAcked: 0, segmentsIn: 0, segmentsOut: 0,
                                    inode: UInt64(load32(bytes, at + 68)), isIPv6: family == UInt8(AF_INET6))
        var offset = at + Layout.message
        while offset + 4 <= end {
            let length = Int(UInt16(bytes[offset]) | UInt16(bytes[offset + 1]) << 8)
            let type = UInt16(bytes[offset + 2]) | UInt16(bytes[offset + 3]) << 8
            guard length >= 4, offset + length <= end else { break }
            if type == Layout.infoAttribute, length - 4 >= Layout.segmentsIn + 4 {
                let info = offset + 4
                connection.bytesAcked = load64(bytes, info + Layout.bytesAcked)
                connection.bytesReceived = load64(bytes, info + Layout.bytesReceived)
                connection.segmentsOut = load32(bytes, info + Layout.segmentsOut)
                connection.segmentsIn = load32(bytes, info + Layout.segmentsIn)
            }
            offset += (length + 3) & ~3
        }
        return connection
    }

    private static func load32(_ bytes: [UInt8], _ at: Int) -> UInt32 {
        (0..<4).reduce(UInt32(0)) { $0 | UInt32(bytes[at + $1]) << (8 * UInt32($1)) }
    }

    private static func load64(_ bytes: [UInt8], _ at: Int) -> UInt64 {
        (0..<8).reduce(UInt64(0)) { $0 | UInt64(bytes[at + $1]) << (8 * UInt64($1)) }
    }
}
