@testable import Engine
import Foundation
import XCTest

/// sd_notify's wire format without systemd: a datagram socket receives what the engine
/// sends, at a path or under an abstract name (`@…`).
final class ServiceNotifierTests: XCTestCase {
    /// Binds a datagram socket at `name` (a path, or `@abstract`) and returns it.
    func receiver(_ name: String) throws -> Int32 {
        let descriptor = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(name.utf8)
        let abstract = bytes.first == UInt8(ascii: "@")
        if abstract { bytes[0] = 0 }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + (abstract ? 0 : 1))
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, length) }
        }
        guard bound == 0 else { throw POSIXError(.EADDRINUSE) }
        return descriptor
    }

    func receive(_ descriptor: Int32) -> String {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        return count > 0 ? String(decoding: buffer[0..<count], as: UTF8.self) : ""
    }

    func testReadyAndStoppingReachAPathAndAnAbstractName() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("vpm-notify-\(getpid()).sock").path
        defer { unlink(path) }
        for name in [path, "@vpm-notify-\(getpid())"] {
            let descriptor = try receiver(name)
            defer { close(descriptor) }
            let notifier = ServiceNotifier(environment: ["NOTIFY_SOCKET": name])
            notifier.ready(status: "multiplexing 9000/tcp")
            XCTAssertEqual(receive(descriptor), "READY=1\nSTATUS=multiplexing 9000/tcp", name)
            notifier.stopping()
            XCTAssertTrue(receive(descriptor).hasPrefix("STOPPING=1\n"), name)
        }
    }

    func testWithoutNotifySocketNothingIsSent() {
        XCTAssertFalse(ServiceNotifier(environment: [:]).send("READY=1"))
        XCTAssertFalse(ServiceNotifier(environment: ["NOTIFY_SOCKET": "/nonexistent/notify.sock"]).send("READY=1"))
    }
}
