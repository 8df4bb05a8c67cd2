import Packet
#if canImport(Glibc)
import Glibc
#endif

/// An instance's socket, received from `vpm exec`'s supervisor (SCM_RIGHTS): the engine
/// binds it to the virtual port itself and marks it (SO_MARK, which only a process with
/// CAP_NET_ADMIN can set), so the rules can tell the instance's socket from any other
/// socket on that port, and the instance watcher can tell it by its inode.
struct InstanceSocket {
    /// SO_MARK of instance sockets ("vpm" + 2): the rules deliver connections on a virtual
    /// port only to a socket that carries it.
    static let mark: UInt32 = 0x7670_6D02

    let descriptor: Int32

    enum Failure: Error, Equatable {
        /// Not a TCP/UDP socket of the request's transport, or already bound.
        case unsuitable(String)
        /// The kernel's answer to setsockopt or bind.
        case system(String, Int32)
    }

    /// Binds the socket to `address`:`virtualPort` (the address the program asked for, in
    /// the socket's own family), then marks it, and returns its inode. Marked only once it
    /// is bound where the engine chose: a socket whose bind failed leaves unmarked, so no
    /// caller can carry a marked socket to another port.
    func adopt(address: IPAddress, virtualPort: UInt16, transport: TransportProtocol) -> Result<UInt64, Failure> {
        let domain = option(SOL_SOCKET, SO_DOMAIN), type = option(SOL_SOCKET, SO_TYPE)
        let protocolNumber = option(SOL_SOCKET, SO_PROTOCOL)
        let expected = transport == .tcp ? (Int32(SOCK_STREAM.rawValue), Int32(IPPROTO_TCP)) : (Int32(SOCK_DGRAM.rawValue), Int32(IPPROTO_UDP))
        guard domain == AF_INET || domain == AF_INET6, type == expected.0, protocolNumber == expected.1 else {
            return .failure(.unsuitable("the descriptor is not a \(transport.name) socket"))
        }
        guard domain == AF_INET6 || address.isIPv4 else {
            return .failure(.unsuitable("an IPv4 socket cannot bind the IPv6 address \(address)"))
        }
        guard localPort() == 0 else { return .failure(.unsuitable("the socket is already bound")) }
        let bytes = SocketAddress(address, port: virtualPort, family: domain == AF_INET6 ? .ipv6 : .ipv4).bytes
        let bound = bytes.withUnsafeBytes { raw in
            bind(descriptor, raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(raw.count))
        }
        guard bound == 0 else { return .failure(.system("bind", errno)) }
        // The caller holds the socket too and could have bound it first: check what it is on.
        guard localPort() == virtualPort else { return .failure(.unsuitable("the socket is bound elsewhere")) }
        var mark = Self.mark
        guard setsockopt(descriptor, SOL_SOCKET, SO_MARK, &mark, socklen_t(MemoryLayout<UInt32>.size)) == 0 else {
            return .failure(.system("SO_MARK", errno))
        }
        var status = stat()
        guard fstat(descriptor, &status) == 0 else { return .failure(.system("fstat", errno)) }
        return .success(UInt64(status.st_ino))
    }

    /// A client socket's bound address and port (for a connect registration): only a TCP or
    /// UDP socket of `transport` with a port. The address may be the wildcard.
    func boundEndpoint(transport: TransportProtocol) -> (address: IPAddress, port: UInt16)? {
        let type = option(SOL_SOCKET, SO_TYPE), protocolNumber = option(SOL_SOCKET, SO_PROTOCOL)
        let expected = transport == .tcp ? (Int32(SOCK_STREAM.rawValue), Int32(IPPROTO_TCP)) : (Int32(SOCK_DGRAM.rawValue), Int32(IPPROTO_UDP))
        guard type == expected.0, protocolNumber == expected.1 else { return nil }
        var storage = [UInt8](repeating: 0, count: 128)
        var length = socklen_t(storage.count)
        let named = storage.withUnsafeMutableBytes { raw in
            getsockname(descriptor, raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), &length)
        }
        guard named == 0 else { return nil }
        return SocketAddress(bytes: storage.prefix(Int(length))).map { ($0.address, $0.port) }
    }

    /// The source address the routing table picks toward `remote` (a UDP socket connected,
    /// nothing sent).
    static func routeSource(to remote: IPAddress) -> IPAddress? {
        let ipv6 = !remote.isIPv4
        let probe = socket(ipv6 ? AF_INET6 : AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard probe >= 0 else { return nil }
        defer { close(probe) }
        let bytes = SocketAddress(remote, port: 9).bytes
        let connected = bytes.withUnsafeBytes { raw in
            connect(probe, raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(raw.count))
        }
        guard connected == 0 else { return nil }
        var storage = [UInt8](repeating: 0, count: 128)
        var length = socklen_t(storage.count)
        let named = storage.withUnsafeMutableBytes { raw in
            getsockname(probe, raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), &length)
        }
        return named == 0 ? SocketAddress(bytes: storage.prefix(Int(length)))?.address : nil
    }

    private func localPort() -> UInt16? {
        var storage = [UInt8](repeating: 0, count: 128)
        var length = socklen_t(storage.count)
        let named = storage.withUnsafeMutableBytes { raw in
            getsockname(descriptor, raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), &length)
        }
        guard named == 0, length >= 4 else { return nil }
        return UInt16(storage[2]) << 8 | UInt16(storage[3])
    }

    /// The socket's SO_MARK (`mark` on the sockets the engine bound for an instance).
    var currentMark: UInt32 { UInt32(bitPattern: option(SOL_SOCKET, SO_MARK)) }

    private func option(_ level: Int32, _ name: Int32) -> Int32 {
        var value: Int32 = -1
        var length = socklen_t(MemoryLayout<Int32>.size)
        return getsockopt(descriptor, level, name, &value, &length) == 0 ? value : -1
    }
}
