import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// systemd's readiness protocol (sd_notify(3)): when the service manager sets
/// `NOTIFY_SOCKET`, the engine sends `READY=1` once its rules are in and its queues are
/// bound, `RELOADING=1` then `READY=1` around a reload, `STOPPING=1` when it begins to stop,
/// and a `STATUS=` line people see in `systemctl status`. One datagram per message to a Unix socket (a path, or an abstract
/// name written with a leading `@`); without the variable nothing is sent.
struct ServiceNotifier: Sendable {
    let path: String?

    init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        let path = environment["NOTIFY_SOCKET"] ?? ""
        self.path = path.isEmpty ? nil : path
    }

    func ready(status: String) { send("READY=1\nSTATUS=\(status)") }
    /// Around a reload (systemd's `ExecReload` waits for READY=1 again).
    func reloading(status: String) { send("RELOADING=1\nSTATUS=\(status)") }
    func stopping() { send("STOPPING=1\nSTATUS=stopping: removing rules") }

    /// Best effort: a service manager that went away must not stop the engine.
    @discardableResult
    func send(_ message: String) -> Bool {
        guard let path else { return false }
        let descriptor = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { return false }
        defer { close(descriptor) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(path.utf8)
        let abstract = bytes.first == UInt8(ascii: "@")
        if abstract { bytes[0] = 0 }
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard bytes.count < capacity else { return false }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in raw.copyBytes(from: bytes) }
        // An abstract name's length is exact; a path's includes its terminating zero.
        let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + (abstract ? 0 : 1))
        let payload = Array(message.utf8)
        let sent = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
                payload.withUnsafeBytes { sendto(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL), socketAddress, length) }
            }
        }
        return sent == payload.count
    }
}
