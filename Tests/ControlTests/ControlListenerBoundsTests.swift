@testable import Control
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import XCTest

/// What a local user can do to the control socket is bounded: a request must arrive whole
/// within its time and size, and only so many connections are served at once; the socket
/// keeps answering the others.
final class ControlListenerBoundsTests: XCTestCase {
    var directory = ""
    var path: String { "\(directory)/vpm.sock" }

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("vpm-bounds-\(getpid())-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: directory) }

    func listen() throws -> ControlListener {
        let listener = try ControlListener(path: path) { _, _, _ in ControlResponse(flows: []) }
        listener.start()
        return listener
    }

    /// The answer to whatever `send` writes, read until the engine closes (at most 10 s).
    func exchange(_ connection: Int32, send: (Int32) -> Void) throws -> ControlResponse {
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(connection, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        send(connection)
        let line = try ControlSocket.readLine(from: connection, path: path)
        return try JSONDecoder().decode(ControlResponse.self, from: line)
    }

    func write(_ connection: Int32, _ text: String) {
        _ = Array(text.utf8).withUnsafeBytes { Glibc.send(connection, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    func testARequestDribbledSlowerThanItsDeadlineIsCutOff() throws {
        let listener = try listen()
        defer { listener.close() }
        let connection = try ControlSocket.connect(to: path)
        defer { close(connection) }
        let started = ContinuousClock.now
        // One byte every 300 ms: each read is quick, the whole line never comes in time.
        let answer = try exchange(connection) { connection in
            for byte in #"{"command":"flows"}"#.prefix(12) {
                write(connection, String(byte))
                usleep(300_000)
            }
        }
        XCTAssertEqual(answer.error, "no request from \(path) in time")
        XCTAssertLessThan(started.duration(to: .now), .seconds(5))
    }

    func testAnOversizedRequestIsCutOffWithItsLimit() throws {
        let listener = try listen()
        defer { listener.close() }
        let connection = try ControlSocket.connect(to: path)
        defer { close(connection) }
        let answer = try exchange(connection) { write($0, String(repeating: "x", count: ControlListener.requestLimit + 10) + "\n") }
        XCTAssertEqual(answer.error, "a request longer than \(ControlListener.requestLimit) bytes from \(path): cut off")
        XCTAssertEqual(try ControlSocket.send(ControlRequest(.flows), to: path).flows, [], "still serving")
    }

    /// 64 silent connections hold every slot: the next is told "busy" at once, without
    /// waiting for their deadline; once they are cut off, requests are served again.
    func testConnectionsBeyondTheCapAreToldBusyAtOnce() throws {
        let listener = try listen()
        defer { listener.close() }
        var silent: [Int32] = []
        defer { silent.forEach { close($0) } }
        for _ in 0..<ControlListener.maximumConnections { silent.append(try ControlSocket.connect(to: path)) }
        usleep(200_000)  // all accepted
        let started = ContinuousClock.now
        let busy = try ControlSocket.send(ControlRequest(.flows), to: path)
        XCTAssertEqual(busy.error, "busy: \(ControlListener.maximumConnections) control connections at once; try again in a moment")
        XCTAssertLessThan(started.duration(to: .now), ControlListener.requestTimeout, "not queued behind the silent ones")
        var served = false
        let deadline = ContinuousClock.now + .seconds(10)
        while !served && ContinuousClock.now < deadline {
            served = (try? ControlSocket.send(ControlRequest(.flows), to: path))?.flows == []
            if !served { usleep(200_000) }
        }
        XCTAssertTrue(served, "served again once the silent connections were cut off")
    }
}
