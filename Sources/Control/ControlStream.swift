import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A control connection that stays open for a stream of answers (`vpm flows --watch`, and
/// `vpm flows`' table in pieces): the engine writes one JSON line per batch; a watch's
/// client reads until it hangs up, a table's until the line without `more`.
public final class ControlStream: @unchecked Sendable {
    private let connection: Int32
    private let path: String

    init(connection: Int32, path: String) {
        self.connection = connection
        self.path = path
    }

    /// Writes one answer line; false when the peer is gone (or stopped reading for the
    /// connection's send timeout), and the stream should end.
    public func send(_ response: ControlResponse) -> Bool {
        guard var data = try? JSONEncoder().encode(response) else { return false }
        data.append(UInt8(ascii: "\n"))
        return (try? ControlSocket.writeAll(data, to: connection, path: path)) != nil
    }

    /// How long one write may wait for the peer to read (the listener's default is 2 s):
    /// a large answer is read at the pace of a client that decodes as it goes.
    public func setSendTimeout(seconds: Int) {
        var timeout = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(connection, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    /// Writes `line` as it is (it ends with its newline): an answer encoded by hand
    /// (`FlowRecord.appendPiece`). False when the peer is gone, as `send`.
    public func send(line: [UInt8]) -> Bool {
        (try? ControlSocket.writeAll(line, to: connection, path: path)) != nil
    }

    /// True once the peer hung up (end of stream, or an error), without waiting.
    public var peerClosed: Bool {
        var byte: UInt8 = 0
        let count = recv(connection, &byte, 1, Int32(MSG_PEEK | MSG_DONTWAIT))
        if count == 0 { return true }
        return count < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR
    }
}

extension ControlSocket {
    /// Sends `request` and hands each answer line to `each` until it returns false or the
    /// engine closes the connection (then returns normally). Without `timeoutSeconds` no
    /// receive timeout: a watch waits as long as nothing happens; with it, the engine must
    /// send something at least that often.
    public static func stream(_ request: ControlRequest, to path: String, timeoutSeconds: Int? = nil,
                              each: (ControlResponse) throws -> Bool) throws {
        let connection = try connect(to: path)
        defer { close(connection) }
        if let timeoutSeconds {
            var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
            setsockopt(connection, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        }
        var line = try JSONEncoder().encode(request)
        line.append(UInt8(ascii: "\n"))
        try writeAll(line, to: connection, path: path)
        var buffer = Data()
        // Bytes at the front of `buffer` already searched for a newline: a line of a
        // megabyte arrives in many reads, and each read's bytes are searched once.
        var searched = 0
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            while let newline = Self.newline(in: buffer, from: searched) {
                let line = buffer[buffer.startIndex..<buffer.startIndex + newline]
                // A piece of `vpm flows` by hand (`FlowRecord.parsePiece`), anything else by Foundation.
                let response = try line.withUnsafeBytes(FlowRecord.parsePiece)
                    ?? JSONDecoder().decode(ControlResponse.self, from: line)
                buffer.removeSubrange(buffer.startIndex...buffer.startIndex + newline)
                searched = 0
                guard try each(response) else { return }
            }
            searched = buffer.count
            guard buffer.count < 64 << 20 else { throw ControlError("the engine sent a line longer than 64 MB on \(path)") }
            let count = chunk.withUnsafeMutableBytes { recv(connection, $0.baseAddress, $0.count, 0) }
            if count == 0 { return }
            if count < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN {
                    throw ControlError("no answer from \(path) in \(timeoutSeconds ?? 0) s: the engine is stuck or busy (see its log), or older than this vpm and still building a large answer")
                }
                throw ControlError("cannot read from \(path): \(String(cString: strerror(errno)))")
            }
            buffer.append(contentsOf: chunk[0..<count])
        }
    }

    /// The offset of the first newline in `buffer` at or after `offset`, by memchr.
    static func newline(in buffer: Data, from offset: Int) -> Int? {
        guard offset < buffer.count else { return nil }
        return buffer.withUnsafeBytes { raw -> Int? in
            guard let base = raw.baseAddress, let found = memchr(base + offset, Int32(UInt8(ascii: "\n")), raw.count - offset) else { return nil }
            return base.distance(to: UnsafeRawPointer(found))
        }
    }
}
