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

    /// Marks and binds the socket to `address`:`virtualPort` (the address the program asked
    /// for, in the socket's own family) and returns its inode.
    func adopt(address: IPAddress, virtualPort: UInt16, transport: TransportProtocol) -> Result<UInt64, Failure> {
        let domain = option(SOL_SOCKET, SO_DOMAIN), type = option(SOL_SOCKET, SO_TYPE)
        let expectedType = transport == .tcp ? Int32(SOCK_STREAM.rawValue) : Int32(SOCK_DGRAM.rawValue)
        guard domain == AF_INET || domain == AF_INET6, type == expectedType else {
            return .failure(.unsuitable("the descriptor is not a \(transport.name) socket"))
        }
        guard domain == AF_INET6 || address.isIPv4 else {
            return .failure(.unsuitable("an IPv4 socket cannot bind the IPv6 address \(address)"))
        }
        guard localPort() == 0 else { return .failure(.unsuitable("the socket is already bound")) }
        var mark = Self.mark
        guard setsockopt(descriptor, SOL_SOCKET, SO_MARK, &mark, socklen_t(MemoryLayout<UInt32>.size)) == 0 else {
            return .failure(.system("SO_MARK", errno))
        }
        let bytes = Self.socketAddress(address, port: virtualPort, ipv6: domain == AF_INET6)
        let bound = bytes.withUnsafeBytes { raw in
            bind(descriptor, raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(raw.count))
        }
        guard bound == 0 else { return .failure(.system("bind", errno)) }
        var status = stat()
        guard fstat(descriptor, &status) == 0 else { return .failure(.system("fstat", errno)) }
        return .success(UInt64(status.st_ino))
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

    private func option(_ level: Int32, _ name: Int32) -> Int32 {
        var value: Int32 = -1
        var length = socklen_t(MemoryLayout<Int32>.size)
        return getsockopt(descriptor, level, name, &value, &length) == 0 ? value : -1
    }

    /// sockaddr_in, or sockaddr_in6 (IPv4 as IPv4-mapped) for an IPv6 socket.
    static func socketAddress(_ address: IPAddress, port: UInt16, ipv6: Bool) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: ipv6 ? 28 : 16)
        let family = UInt16(ipv6 ? AF_INET6 : AF_INET)
        bytes[0] = UInt8(truncatingIfNeeded: family)
        bytes[1] = UInt8(family >> 8)
        bytes[2] = UInt8(port >> 8)
        bytes[3] = UInt8(truncatingIfNeeded: port)
        if ipv6 {
            for index in 0..<8 {
                let group = address.group(index)
                bytes[8 + 2 * index] = UInt8(group >> 8)
                bytes[9 + 2 * index] = UInt8(truncatingIfNeeded: group)
            }
        } else {
            let value = address.ipv4Value ?? 0
            for index in 0..<4 { bytes[4 + index] = UInt8(truncatingIfNeeded: value >> (24 - 8 * index)) }
        }
        return bytes
    }
}
