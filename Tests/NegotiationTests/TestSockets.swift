import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Plain blocking sockets on 127.0.0.1, so the tests can play a misbehaving peer at the
/// byte level without going through the module under test.
enum TestSockets {
    static func listener(backlog: Int32 = 64) -> (descriptor: Int32, port: Int) {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        precondition(descriptor >= 0)
        var one: Int32 = 1
        setsockopt(descriptor, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = loopback(port: 0)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        precondition(bound == 0, "bind: \(errno)")
        precondition(listen(descriptor, backlog) == 0)
        return (descriptor, localPort(descriptor))
    }

    /// A port on 127.0.0.1 where nothing listens (bound, then closed).
    static func closedPort() -> Int {
        let (descriptor, port) = listener()
        close(descriptor)
        return port
    }

    /// Connects, sends `bytes`, optionally half-closes, and reads until the peer closes
    /// (or `timeout` passes). Returns what the peer sent.
    static func exchange(port: Int, send bytes: [UInt8], shutdownWrite: Bool = true, timeout: TimeInterval = 5) -> [UInt8] {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        precondition(descriptor >= 0)
        defer { close(descriptor) }
        var limit = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - timeout.rounded(.down)) * 1_000_000))
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        var address = loopback(port: port)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        precondition(connected == 0, "connect: \(errno)")
        writeAll(descriptor, bytes)
        if shutdownWrite { shutdown(descriptor, Int32(SHUT_WR)) }
        return readAll(descriptor)
    }

    static func writeAll(_ descriptor: Int32, _ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if written <= 0 { return }
            offset += written
        }
    }

    static func readAll(_ descriptor: Int32) -> [UInt8] {
        var result = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = chunk.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
            if count <= 0 { return result }
            result += chunk[0..<count]
        }
    }

    /// Reads up to and including the first "\n", or until EOF.
    static func readLine(_ descriptor: Int32) -> [UInt8] {
        var result = [UInt8]()
        var byte: UInt8 = 0
        while recv(descriptor, &byte, 1, 0) == 1 {
            result.append(byte)
            if byte == UInt8(ascii: "\n") { break }
        }
        return result
    }

    private static func loopback(port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return address
    }

    private static func localPort(_ descriptor: Int32) -> Int {
        var address = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) }
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}

/// A listener that never accepts: the kernel completes the handshake, nobody answers.
final class SilentListener {
    let descriptor: Int32
    let port: Int

    init() {
        (descriptor, port) = TestSockets.listener()
    }

    deinit {
        close(descriptor)
    }
}

/// A hand-made peer engine on 127.0.0.1: accepts connections on its own thread, reads
/// one line from each, writes whatever `answer` returns for it, and closes.
final class FakeEngine: @unchecked Sendable {
    let descriptor: Int32
    let port: Int
    private let thread: Thread

    init(answer: @escaping @Sendable ([UInt8]) -> [UInt8]) {
        let (descriptor, port) = TestSockets.listener()
        self.descriptor = descriptor
        self.port = port
        thread = Thread {
            while true {
                let connection = accept(descriptor, nil, nil)
                if connection < 0 { return }
                let line = TestSockets.readLine(connection)
                TestSockets.writeAll(connection, answer(line))
                close(connection)
            }
        }
        thread.start()
    }

    func stop() {
        shutdown(descriptor, Int32(SHUT_RDWR))
        close(descriptor)
    }
}

/// A peer that accepts connections and never reads or answers; closes them at `stop()`.
final class HangingEngine: @unchecked Sendable {
    let descriptor: Int32
    let port: Int
    private let accepted = NSLock()
    private var connections: [Int32] = []

    init() {
        let (descriptor, port) = TestSockets.listener()
        self.descriptor = descriptor
        self.port = port
        let thread = Thread { [self] in
            while true {
                let connection = accept(descriptor, nil, nil)
                if connection < 0 { return }
                accepted.withLock { connections.append(connection) }
            }
        }
        thread.start()
    }

    var acceptedCount: Int { accepted.withLock { connections.count } }

    func stop() {
        shutdown(descriptor, Int32(SHUT_RDWR))
        close(descriptor)
        accepted.withLock {
            connections.forEach { close($0) }
            connections = []
        }
    }
}
