import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The engine's local control socket: a Unix stream socket (default /run/vpm/vpm.sock,
/// mode 0600) carrying one JSON request line and one JSON response line per connection —
/// or, for a streamed request (`ControlRequest.isStreamed`), a stream of response lines.
public enum ControlSocket {
    public static let defaultPath = "/run/vpm/vpm.sock"

    static func connect(to path: String) throws -> Int32 {
        let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { throw ControlError("cannot create a socket: \(String(cString: strerror(errno)))") }
        var address = try unixAddress(path)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard connected == 0 else {
            let code = errno
            close(descriptor)
            switch code {
            case ENOENT, ECONNREFUSED:
                throw ControlError("no engine answers at \(path): is `vpm run` running? (start it, or pass --socket PATH)")
            case EACCES, EPERM:
                throw ControlError("permission denied on \(path): only root and the members of the engine's control group may use it (control: {group: NAME} in the configuration; run as root, or ask an operator to add you to that group)",
                                   code: EACCES)
            default:
                throw ControlError("cannot connect to \(path): \(String(cString: strerror(code)))")
            }
        }
        return descriptor
    }

    static func unixAddress(_ path: String) throws -> sockaddr_un {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard !bytes.isEmpty, bytes.count < capacity else {
            throw ControlError("control socket path is empty or longer than \(capacity - 1) bytes: \(path)")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        return address
    }

    static func writeAll(_ data: some ContiguousBytes, to descriptor: Int32, path: String) throws {
        try data.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                // MSG_NOSIGNAL: a peer that hung up must not kill the engine with SIGPIPE.
                let written = Glibc.send(descriptor, raw.baseAddress! + offset, raw.count - offset, Int32(MSG_NOSIGNAL))
                if written < 0 {
                    if errno == EINTR { continue }
                    throw ControlError("cannot write to \(path): \(String(cString: strerror(errno)))")
                }
                offset += written
            }
        }
    }

    /// Reads up to the first newline (or end of stream). Bounded, so a confused peer
    /// cannot make us buffer without end.
    static func readLine(from descriptor: Int32, path: String, limit: Int = 64 << 20) throws -> Data {
        // An answer never carries a descriptor; one that came anyway is closed at once.
        var received: Int32?
        defer { if let received { close(received) } }
        return try readLine(from: descriptor, path: path, limit: limit, descriptor: &received, waitingFor: "answer")
    }
}

public struct ControlError: Error, CustomStringConvertible, Sendable {
    public var description: String
    /// The system's errno behind it, where one is (EACCES: refused by the socket's mode).
    public var code: Int32?
    public init(_ description: String, code: Int32? = nil) {
        self.description = description
        self.code = code
    }
}
