@testable import Control
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import XCTest

/// The control socket end to end in a temporary folder: no root, no engine.
final class ControlSocketTests: XCTestCase {
    var directory: String!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("vpm-control-\(getpid())-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: directory)
    }

    static let flow = FlowRecord(transport: "tcp", state: "established", mode: "source", client: "198.18.1.2",
                                 clientPort: 40000, server: "198.18.0.1", initialPort: 9000, virtualPort: 20017,
                                 aid: "acme", peer: nil, age: 75, idle: 1.5, packetsToServer: 10, bytesToServer: 1000,
                                 packetsToClient: 8, bytesToClient: 5000)

    func testRequestAndResponseRoundTrip() throws {
        let path = "\(directory!)/vpm.sock"
        let listener = try ControlListener(path: path) { request, _, _ in
            request.command == .flows ? ControlResponse(flows: [Self.flow]) : ControlResponse(error: "no stats here")
        }
        listener.start()
        defer { listener.close() }
        XCTAssertEqual(try ControlSocket.send(ControlRequest(.flows), to: path).flows, [Self.flow])
        XCTAssertEqual(try ControlSocket.send(ControlRequest(.stats), to: path).error, "no stats here")
        let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int
        XCTAssertEqual(mode, 0o600)
    }

    /// A bind carries the program's socket: the engine receives the same open file (same
    /// inode), a descriptor of its own that it may bind and then close.
    func testADescriptorTravelsWithTheRequest() throws {
        let path = "\(directory!)/vpm.sock"
        let listener = try ControlListener(path: path) { _, _, descriptor in
            guard let descriptor else { return ControlResponse(error: "no descriptor") }
            var status = stat()
            fstat(descriptor, &status)
            return ControlResponse(virtualPort: UInt16(truncatingIfNeeded: status.st_ino))
        }
        listener.start()
        defer { listener.close() }
        let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(socket) }
        var status = stat()
        fstat(socket, &status)
        let answer = try ControlSocket.send(ControlRequest(.bind), to: path, descriptor: socket)
        XCTAssertEqual(answer.virtualPort, UInt16(truncatingIfNeeded: status.st_ino))
        // Without one, the handler says so.
        XCTAssertEqual(try ControlSocket.send(ControlRequest(.bind), to: path).error, "no descriptor")
    }

    func testSecondListenerOnALiveSocketIsRefused() throws {
        let path = "\(directory!)/vpm.sock"
        let first = try ControlListener(path: path) { _, _, _ in ControlResponse() }
        first.start()
        defer { first.close() }
        XCTAssertThrowsError(try ControlListener(path: path) { _, _, _ in ControlResponse() }) { error in
            XCTAssertTrue("\(error)".contains("another engine answers"), "\(error)")
        }
    }

    func testStaleSocketFileIsReplaced() throws {
        let path = "\(directory!)/vpm.sock"
        let first = try ControlListener(path: path) { _, _, _ in ControlResponse() }
        first.close()
        _ = FileManager.default.createFile(atPath: path, contents: nil)  // as if the engine died
        let second = try ControlListener(path: path) { _, _, _ in ControlResponse(flows: []) }
        second.start()
        defer { second.close() }
        XCTAssertEqual(try ControlSocket.send(ControlRequest(.flows), to: path).flows, [])
    }

    func testNoEngineSaysWhatToDo() {
        XCTAssertThrowsError(try ControlSocket.send(ControlRequest(.flows), to: "\(directory!)/missing.sock")) { error in
            XCTAssertTrue("\(error)".contains("is `vpm run` running?"), "\(error)")
        }
    }

    func testTableIsAligned() {
        let text = FlowRecord.table([Self.flow])
        let lines = text.split(separator: "\n")
        XCTAssertEqual(lines.count, 2)
        XCTAssertTrue(lines[0].hasPrefix("PROTO  STATE        MODE    CLIENT"), String(lines[0]))
        XCTAssertTrue(lines[1].hasPrefix("tcp    established  source  198.18.1.2:40000"), String(lines[1]))
        XCTAssertTrue(lines[1].contains("acme  75s  1s"), String(lines[1]))
        XCTAssertEqual(FlowRecord.endpoint("2001:db8::1", 80), "[2001:db8::1]:80")
    }
}
