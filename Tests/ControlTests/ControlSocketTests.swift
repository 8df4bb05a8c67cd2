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

    static var flowsInPieces: ControlRequest {
        var request = ControlRequest(.flows)
        request.pieces = true
        return request
    }

    /// `vpm flows` reads the table in pieces (`ControlSocket.stream`): lines dribbled a byte
    /// per write, two lines in one write, a newline as a write's last byte — each piece
    /// arrives once, in order, with `more` on all but the last.
    func testAStreamedTableArrivesPieceByPieceHoweverTheBytesAreCut() throws {
        let path = "\(directory!)/vpm.sock"
        @Sendable func piece(_ count: Int, more: Bool) -> [UInt8] {
            var line: [UInt8] = []
            FlowRecord.appendPiece(Array(repeating: Self.flow, count: count), more: more, to: &line)
            return line
        }
        let listener = try ControlListener(path: path, stream: { request, _, stream in
            guard request.command == .flows, request.pieces == true else { return }
            for byte in piece(3, more: true) { guard stream.send(line: [byte]) else { return } }
            _ = stream.send(line: piece(1, more: true) + piece(2, more: true))
            let last = piece(0, more: false)
            _ = stream.send(line: Array(last.dropLast()))
            usleep(20_000)
            _ = stream.send(line: [last.last!])
        }) { _, _, _ in ControlResponse(error: "not streamed") }
        listener.start()
        defer { listener.close() }
        let request = Self.flowsInPieces
        var received: [ControlResponse] = []
        try ControlSocket.stream(request, to: path, timeoutSeconds: 5) { received.append($0); return $0.more == true }
        XCTAssertEqual(received.map { $0.flows?.count }, [3, 1, 2, 0])
        XCTAssertEqual(received.map(\.more), [true, true, true, nil])
        XCTAssertEqual(received.first?.flows?.first, Self.flow)
    }

    /// An engine that stops mid-table: the stream ends after the pieces that came (the CLI
    /// then says the last one is missing); one that sends nothing: the timeout says so.
    func testAStreamCutShortEndsAndASilentOneTimesOut() throws {
        let path = "\(directory!)/vpm.sock"
        let listener = try ControlListener(path: path, stream: { request, _, stream in
            if request.command == .watch { sleep(3); return }
            var line: [UInt8] = []
            FlowRecord.appendPiece([Self.flow], more: true, to: &line)
            _ = stream.send(line: line)
        }) { _, _, _ in ControlResponse() }
        listener.start()
        defer { listener.close() }
        let request = Self.flowsInPieces
        var received: [ControlResponse] = []
        try ControlSocket.stream(request, to: path, timeoutSeconds: 5) { received.append($0); return true }
        XCTAssertEqual(received.map(\.more), [true])
        XCTAssertThrowsError(try ControlSocket.stream(ControlRequest(.watch), to: path, timeoutSeconds: 1) { _ in true }) { error in
            XCTAssertTrue("\(error)".contains("no answer from \(path) in 1 s"), "\(error)")
        }
    }

    /// Lines not in `appendPiece`'s exact form (a watch's events, an error, a table encoded
    /// by Foundation) are not the hand reader's (`parsePiece` says nil): `stream` decodes them
    /// with JSONDecoder, in order, between hand-read pieces.
    func testLinesNotInPieceFormAreDecodedByFoundation() throws {
        let path = "\(directory!)/vpm.sock"
        let watch = ControlResponse(events: [FlowEventRecord(event: "new", sequence: 7, flow: Self.flow)], lost: 2)
        let failure = ControlResponse(error: "the engine is stopping", errorCode: "ESHUTDOWN")
        let encoded = ControlResponse(flows: [Self.flow, Self.flow], more: true)
        for response in [watch, failure, encoded] {
            let line = try JSONEncoder().encode(response)
            XCTAssertNil(line.withUnsafeBytes(FlowRecord.parsePiece), String(decoding: line, as: UTF8.self))
        }
        let listener = try ControlListener(path: path, stream: { _, _, stream in
            var piece: [UInt8] = []
            FlowRecord.appendPiece([Self.flow], more: true, to: &piece)
            _ = stream.send(line: piece)
            _ = stream.send(watch)
            _ = stream.send(encoded)
            _ = stream.send(failure)
            piece.removeAll()
            FlowRecord.appendPiece([], more: false, to: &piece)
            _ = stream.send(line: piece)
        }) { _, _, _ in ControlResponse(error: "not streamed") }
        listener.start()
        defer { listener.close() }
        var received: [ControlResponse] = []
        try ControlSocket.stream(Self.flowsInPieces, to: path, timeoutSeconds: 5) { received.append($0); return received.count < 5 }
        XCTAssertEqual(received, [ControlResponse(flows: [Self.flow], more: true), watch, encoded, failure, ControlResponse(flows: [])])
    }

    /// A listener without a stream handler (an engine that predates pieces answers the same
    /// way) answers flows in pieces with one line: the whole table, which is also the last.
    func testFlowsInPiecesWithoutAStreamHandlerGetOneLine() throws {
        let path = "\(directory!)/vpm.sock"
        let listener = try ControlListener(path: path) { _, _, _ in ControlResponse(flows: [Self.flow, Self.flow]) }
        listener.start()
        defer { listener.close() }
        let request = Self.flowsInPieces
        var received: [ControlResponse] = []
        try ControlSocket.stream(request, to: path, timeoutSeconds: 5) { received.append($0); return true }
        XCTAssertEqual(received.map { $0.flows?.count }, [2])
        XCTAssertNil(received.first?.more)
        XCTAssertNil(received.first?.error)
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
