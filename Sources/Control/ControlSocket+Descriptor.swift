import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Requests and answers on the control socket, and the descriptor a request may carry
/// (SCM_RIGHTS): `vpm exec`'s
/// supervisor hands the program's socket to the engine, which binds it to the virtual port
/// itself and marks it as the instance's (docs/security.md).
extension ControlSocket {
    /// struct cmsghdr is { size_t len; int level; int type; } then the data, aligned to size_t.
    static let controlHeaderLength = MemoryLayout<Int>.size + 2 * MemoryLayout<Int32>.size
    static let controlSpace = controlHeaderLength + MemoryLayout<Int>.size  // CMSG_SPACE(sizeof(int))

    /// Sends `request` to the engine listening at `path`, with `descriptor` attached when
    /// given (a bind's or a connect registration's socket), and returns its answer.
    public static func send(_ request: ControlRequest, to path: String, descriptor: Int32? = nil,
                            timeoutSeconds: Int = 5) throws -> ControlResponse {
        let connection = try connect(to: path)
        defer { close(connection) }
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(connection, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var line = try JSONEncoder().encode(request)
        line.append(UInt8(ascii: "\n"))
        if let descriptor {
            // The descriptor rides on the first byte; the rest of the line follows as usual.
            guard try sendWithDescriptor(Array(line.prefix(1)), descriptor: descriptor, on: connection) == 1 else {
                throw ControlError("cannot send to \(path): the engine closed the connection")
            }
            line = line.dropFirst()
        }
        do { try writeAll(line, to: connection, path: path) } catch {
            // An engine that refuses at once (busy) answers and closes before reading: its
            // answer is still there to read, and says more than the broken pipe.
            guard let early = try? readLine(from: connection, path: path), !early.isEmpty else { throw error }
            return try decode(early, from: path)
        }
        return try decode(try readLine(from: connection, path: path), from: path)
    }

    private static func decode(_ answer: Data, from path: String) throws -> ControlResponse {
        do {
            return try JSONDecoder().decode(ControlResponse.self, from: answer)
        } catch {
            throw ControlError("the engine at \(path) sent an answer this vpm cannot read (\(error)); are the CLI and the engine the same version?")
        }
    }

    private static func sendWithDescriptor(_ bytes: [UInt8], descriptor: Int32, on connection: Int32) throws -> Int {
        var control = [UInt8](repeating: 0, count: controlSpace)
        control.withUnsafeMutableBytes { raw in
            raw.storeBytes(of: controlHeaderLength + MemoryLayout<Int32>.size, toByteOffset: 0, as: Int.self)
            raw.storeBytes(of: SOL_SOCKET, toByteOffset: MemoryLayout<Int>.size, as: Int32.self)
            raw.storeBytes(of: Int32(SCM_RIGHTS), toByteOffset: MemoryLayout<Int>.size + 4, as: Int32.self)
            raw.storeBytes(of: descriptor, toByteOffset: controlHeaderLength, as: Int32.self)
        }
        var data = bytes
        let sent = withMessage(&data, &control) { message, _ in sendmsg(connection, &message, Int32(MSG_NOSIGNAL)) }
        guard sent >= 0 else { throw ControlError("cannot send a descriptor to the engine: \(String(cString: strerror(errno)))") }
        return sent
    }

    /// Reads one line (a request, or with `waitingFor` "answer" a response); a descriptor
    /// sent with any part of it lands in `descriptor`
    /// (close-on-exec; the caller closes it). More than one descriptor: the extra ones are
    /// closed at once.
    static func readLine(from connection: Int32, path: String, limit: Int, descriptor: inout Int32?,
                         waitingFor: String = "request", deadline: ContinuousClock.Instant? = nil) throws -> Data {
        var result = Data()
        var chunk = [UInt8](repeating: 0, count: 65536)
        var control = [UInt8](repeating: 0, count: controlSpace * 4)
        while true {
            if let deadline {
                // The whole line within the deadline, however the peer dribbles it.
                let left = ContinuousClock.now.duration(to: deadline)
                guard left > .zero else { throw ControlError("no \(waitingFor) from \(path) in time") }
                let (seconds, attoseconds) = left.components
                var timeout = timeval(tv_sec: Int(seconds), tv_usec: max(1, Int(attoseconds / 1_000_000_000_000)))
                setsockopt(connection, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            }
            let count = withMessage(&chunk, &control) { message, controlRaw in
                let received = recvmsg(connection, &message, Int32(MSG_CMSG_CLOEXEC))
                if received >= 0 { collect(controlRaw, length: Int(message.msg_controllen), into: &descriptor) }
                return received
            }
            if count < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN { throw ControlError("no \(waitingFor) from \(path) in time") }
                throw ControlError("cannot read from \(path): \(String(cString: strerror(errno)))")
            }
            if count == 0 { break }
            if let newline = chunk[0..<count].firstIndex(of: UInt8(ascii: "\n")) {
                result.append(contentsOf: chunk[0..<newline])
                guard result.count <= limit else { break }
                return result
            }
            result.append(contentsOf: chunk[0..<count])
            guard result.count <= limit else { break }
        }
        guard result.count <= limit else {
            throw ControlError("a \(waitingFor) longer than \(limit) bytes from \(path): cut off")
        }
        return result
    }

    /// A msghdr over one data buffer and one control buffer, for sendmsg and recvmsg.
    private static func withMessage(_ data: inout [UInt8], _ control: inout [UInt8],
                                    _ body: (inout msghdr, UnsafeMutableRawBufferPointer) -> Int) -> Int {
        data.withUnsafeMutableBytes { dataRaw in
            control.withUnsafeMutableBytes { controlRaw in
                var vector = iovec(iov_base: dataRaw.baseAddress, iov_len: dataRaw.count)
                return withUnsafeMutablePointer(to: &vector) { vectorPointer in
                    var message = msghdr()
                    message.msg_iov = vectorPointer
                    message.msg_iovlen = 1
                    message.msg_control = controlRaw.baseAddress
                    message.msg_controllen = controlRaw.count
                    return body(&message, controlRaw)
                }
            }
        }
    }

    /// The SCM_RIGHTS descriptors in a received control buffer.
    private static func collect(_ control: UnsafeMutableRawBufferPointer, length: Int, into descriptor: inout Int32?) {
        var offset = 0
        while offset + controlHeaderLength <= length {
            let recordLength = control.load(fromByteOffset: offset, as: Int.self)
            let level = control.load(fromByteOffset: offset + MemoryLayout<Int>.size, as: Int32.self)
            let type = control.load(fromByteOffset: offset + MemoryLayout<Int>.size + 4, as: Int32.self)
            guard recordLength >= controlHeaderLength, offset + recordLength <= length else { return }
            if level == SOL_SOCKET && type == Int32(SCM_RIGHTS) {
                let count = (recordLength - controlHeaderLength) / MemoryLayout<Int32>.size
                for index in 0..<count {
                    let received = control.loadUnaligned(fromByteOffset: offset + controlHeaderLength + 4 * index, as: Int32.self)
                    if descriptor == nil { descriptor = received } else { close(received) }
                }
            }
            offset += (recordLength + MemoryLayout<Int>.size - 1) & ~(MemoryLayout<Int>.size - 1)
        }
    }
}
