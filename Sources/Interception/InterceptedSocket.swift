import CInterceptionShim
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif
import Packet

/// A duplicate of one of the program's sockets, taken with pidfd_getfd: the supervisor
/// binds, names and inspects the program's socket through it (one open file, two
/// descriptors). Closed on deinit.
final class InterceptedSocket {
    private(set) var descriptor: Int32

    /// The program's descriptor `number` in process `pid` (a thread id is fine): nil when
    /// the process is gone or `number` is not open there (the kernel's own answer follows
    /// when the call is let through).
    init?(pid: Int32, number: Int32, threadGroups: ThreadGroups, stillWaiting: () -> Bool) {
        guard let leader = threadGroups.leader(of: pid) else { return nil }
        let pidfd = vpm_pidfd_open(leader)
        guard pidfd >= 0 else { return nil }
        defer { Glibc.close(pidfd) }
        // The pidfd names the process for good; the notification still pending proves the
        // pid was not reused in between.
        guard stillWaiting() else { return nil }
        let descriptor = vpm_pidfd_getfd(pidfd, number)
        guard descriptor >= 0 else { return nil }
        self.descriptor = descriptor
    }

    deinit { close() }

    /// Closes the duplicate. Done before the call is answered: a program that closes its
    /// socket right after must not find the port still held by our copy.
    func close() {
        if descriptor >= 0 { Glibc.close(descriptor) }
        descriptor = -1
    }

    /// TCP or UDP over IPv4/IPv6; nil for any other socket (or not a socket).
    var transport: TransportProtocol? {
        let type = option(SOL_SOCKET, SO_TYPE), protocolNumber = option(SOL_SOCKET, SO_PROTOCOL)
        switch (type, protocolNumber) {
        case (Int32(SOCK_STREAM.rawValue), Int32(IPPROTO_TCP)): return .tcp
        case (Int32(SOCK_DGRAM.rawValue), Int32(IPPROTO_UDP)): return .udp
        default: return nil
        }
    }

    /// TCP: whether a connect() already started (a second connect() on a nonblocking socket
    /// polls the first one).
    var isConnecting: Bool {
        var state = [UInt8](repeating: 0, count: 8)  // struct tcp_info starts with tcpi_state
        var length = socklen_t(state.count)
        guard getsockopt(descriptor, Int32(IPPROTO_TCP), TCP_INFO, &state, &length) == 0, length >= 1 else { return false }
        return state[0] != 7  // TCP_CLOSE
    }

    var localAddress: SocketAddress? {
        var storage = [UInt8](repeating: 0, count: 128)
        var length = socklen_t(storage.count)
        let result = storage.withUnsafeMutableBytes { raw in
            getsockname(descriptor, raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), &length)
        }
        guard result == 0 else { return nil }
        return SocketAddress(bytes: storage.prefix(Int(length)))
    }

    /// bind(2) on the program's socket; 0 or the errno.
    func bind(_ address: SocketAddress) -> Int32 {
        let result = address.bytes.withUnsafeBytes { raw in
            Glibc.bind(descriptor, raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(raw.count))
        }
        return result == 0 ? 0 : errno
    }

    private func option(_ level: Int32, _ name: Int32) -> Int32 {
        var value: Int32 = -1
        var length = socklen_t(MemoryLayout<Int32>.size)
        return getsockopt(descriptor, level, name, &value, &length) == 0 ? value : -1
    }

    /// The thread group (process) of a thread id: `Tgid:` in /proc/TID/status. pidfd_open
    /// needs the process, and Go binds from threads other than the main one.
    static func threadGroup(of tid: Int32) -> Int32? {
        guard let file = fopen("/proc/\(tid)/status", "r") else { return nil }
        defer { fclose(file) }
        var line = [CChar](repeating: 0, count: 256)
        while fgets(&line, Int32(line.count), file) != nil {
            let text = String(decoding: line.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if text.hasPrefix("Tgid:") {
                return Int32(text.dropFirst(5).trimmingCharacters(in: .whitespacesAndNewlines))
            }
        }
        return nil
    }
}

/// Thread id → process id, remembered: reading /proc/TID/status on every call would cost
/// more than the rest of the call's handling. A remembered answer is checked with one
/// access() of /proc/PID/task/TID, so a reused thread id cannot map to a wrong process.
final class ThreadGroups: Sendable {
    private let known = Mutex<[Int32: Int32]>([:])

    func leader(of tid: Int32) -> Int32? {
        if let cached = known.withLock({ $0[tid] }), access("/proc/\(cached)/task/\(tid)", F_OK) == 0 { return cached }
        guard let found = InterceptedSocket.threadGroup(of: tid) else { return nil }
        known.withLock { table in
            if table.count >= 4096 { table.removeAll(keepingCapacity: true) }
            table[tid] = found
        }
        return found
    }
}
