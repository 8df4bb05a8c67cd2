@testable import Control
import Foundation
import XCTest

/// `vpm flows` travels a piece per line, written by hand (`FlowRecord.appendPiece`): the
/// lines must be the JSON Foundation's decoder reads back to the same records, and what
/// Foundation's encoder would have written, byte fixture first.
final class FlowRecordPieceTests: XCTestCase {
    static let golden = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Golden/response-flows-piece.json")

    func testAPieceIsTheGoldenLineByteForByte() throws {
        let expected = try Data(contentsOf: Self.golden)
        let response = try JSONDecoder().decode(ControlResponse.self, from: expected)
        XCTAssertEqual(response.more, true)
        XCTAssertEqual(response.flows?.count, 2)
        var line: [UInt8] = []
        FlowRecord.appendPiece(try XCTUnwrap(response.flows), more: true, to: &line)
        XCTAssertEqual(String(decoding: line, as: UTF8.self), String(decoding: expected, as: UTF8.self))
    }

    func testTheLastPieceAndAnEmptyOneSayNoMore() throws {
        var line: [UInt8] = []
        FlowRecord.appendPiece([], more: false, to: &line)
        XCTAssertEqual(String(decoding: line, as: UTF8.self), "{\"flows\":[]}\n")
        let response = try JSONDecoder().decode(ControlResponse.self, from: Data(line))
        XCTAssertNil(response.more)
        XCTAssertEqual(response.flows, [])
    }

    /// Seconds that are not whole milliseconds (a record decoded from elsewhere) are written
    /// as Swift writes a Double, never rounded: they read back as the same value.
    func testSecondsThatAreNotWholeMillisecondsReadBackExactly() throws {
        for seconds in [0.0005, 1e-7, 2.0000001, 1e13, 12.345, 0, 86_400.001] {
            var out: [UInt8] = []
            FlowRecord.appendSeconds(seconds, to: &out)
            XCTAssertEqual(try JSONDecoder().decode(Double.self, from: Data(out)), seconds, String(decoding: out, as: UTF8.self))
        }
    }

    /// Records with every kind of value a field can hold: decoded back equal, and the same
    /// JSON (as objects) as Foundation's encoder makes of them.
    func testHandWrittenLinesReadBackAndMatchFoundationsEncoder() throws {
        // Spread but repeatable values: a failure replays.
        func spread(_ index: Int, _ salt: UInt64) -> UInt64 { (UInt64(index) &+ salt) &* 0x9E37_79B9_7F4A_7C15 }
        let strings = ["acme", "", "a\"b\\c", "tab\there", "\u{0}\u{1f}\u{7f}", "é中🙂", "/slash/", "2001:db8::1"]
        let records = (0..<2_000).map { index in
            FlowRecord(
                transport: index % 2 == 0 ? "tcp" : "udp", state: strings[index % strings.count], mode: "source",
                client: strings[(index + 1) % strings.count], clientPort: UInt16(truncatingIfNeeded: spread(index, 1)),
                server: "198.18.0.1", initialPort: UInt16(index % 65536), virtualPort: UInt16.max,
                aid: strings[(index + 2) % strings.count], peer: index % 3 == 0 ? nil : strings[(index + 3) % strings.count],
                age: Double(spread(index, 2) % 10_000_000_001) / 1000,
                idle: Double(index % 7 == 0 ? 0 : spread(index, 3) % 1000) / 1000,
                packetsToServer: index == 0 ? UInt64.max : spread(index, 4),
                bytesToServer: UInt64(index), packetsToClient: 10, bytesToClient: spread(index, 5) % (1 << 40))
        }
        var line: [UInt8] = []
        FlowRecord.appendPiece(records, more: true, to: &line)
        XCTAssertEqual(line.last, UInt8(ascii: "\n"))
        XCTAssertEqual(line.filter { $0 == UInt8(ascii: "\n") }.count, 1, "one line: newlines inside strings are escaped")
        let decoded = try JSONDecoder().decode(ControlResponse.self, from: Data(line))
        XCTAssertEqual(decoded.flows, records)
        XCTAssertEqual(decoded.more, true)
        let foundation = try JSONEncoder().encode(ControlResponse(flows: records, more: true))
        let ours = try JSONSerialization.jsonObject(with: Data(line)) as? NSDictionary
        XCTAssertEqual(ours, try JSONSerialization.jsonObject(with: foundation) as? NSDictionary)
        // The CLI's own reader gives what Foundation's decoder gives, field for field.
        let parsed = line.dropLast().withUnsafeBytes(FlowRecord.parsePiece)
        XCTAssertEqual(parsed, decoded)
        XCTAssertEqual(parsed?.flows?.count, records.count)
    }

    func testTheGoldenLineAndAnEmptyLastPieceParseByHandAsFoundationDecodesThem() throws {
        var golden = try Data(contentsOf: Self.golden)
        if golden.last == UInt8(ascii: "\n") { golden.removeLast() }
        XCTAssertEqual(golden.withUnsafeBytes(FlowRecord.parsePiece), try JSONDecoder().decode(ControlResponse.self, from: golden))
        let empty = Data(#"{"flows":[]}"#.utf8)
        let parsed = try XCTUnwrap(empty.withUnsafeBytes(FlowRecord.parsePiece))
        XCTAssertEqual(parsed, try JSONDecoder().decode(ControlResponse.self, from: empty))
        XCTAssertNil(parsed.more)
    }

    /// What `appendPiece` never writes is left to Foundation's decoder (nil here), and
    /// `ControlSocket.stream` hands it there: another key order, a Double as Swift writes
    /// it, escapes it does not use, an error answer, a cut line, bytes that are not UTF-8.
    func testAnythingButTheHandWrittenFormIsLeftToTheDecoder() throws {
        let record = FlowRecord(transport: "tcp", state: "established", mode: "source", client: "198.18.0.2", clientPort: 40000,
                                server: "198.18.0.1", initialPort: 9000, virtualPort: 20017, aid: "acme", peer: nil,
                                age: 1.5, idle: 0.042, packetsToServer: 3, bytesToServer: 180, packetsToClient: 2, bytesToClient: 120)
        var line: [UInt8] = []
        FlowRecord.appendPiece([record], more: false, to: &line)
        let good = String(decoding: line.dropLast(), as: UTF8.self)
        XCTAssertEqual(Data(good.utf8).withUnsafeBytes(FlowRecord.parsePiece)?.flows, [record])
        let others = [
            good.replacingOccurrences(of: #""age":1.5"#, with: #""age":1e-07"#),
            good.replacingOccurrences(of: #""age":1.5"#, with: #""age":1.50"#),
            good.replacingOccurrences(of: #""age":1.5"#, with: #""age":01.5"#),
            good.replacingOccurrences(of: #""age":1.5"#, with: #""age":1.0005"#),
            good.replacingOccurrences(of: #""aid":"acme""#, with: #""aid":"\u0061cme""#),
            good.replacingOccurrences(of: #""aid":"acme""#, with: #""aid":"a\/b""#),
            good.replacingOccurrences(of: #""clientPort":40000"#, with: #""clientPort":70000"#),
            good.replacingOccurrences(of: #""bytesToServer":180"#, with: #""bytesToServer":18446744073709551616"#),
            good.replacingOccurrences(of: #"{"age":1.5,"aid":"acme","#, with: #"{"aid":"acme","age":1.5,"#),
            good.replacingOccurrences(of: "{\"flows\":[", with: "{ \"flows\":["),
            String(good.dropLast()),
            good + " ",
            #"{"error":"the engine is stopping"}"#,
        ]
        for other in others {
            XCTAssertNil(Data(other.utf8).withUnsafeBytes(FlowRecord.parsePiece), other)
        }
        var invalid = Array(good.utf8)
        let aid = try XCTUnwrap(invalid.firstRange(of: Array("acme".utf8)))
        invalid[aid.lowerBound] = 0xff
        XCTAssertNil(invalid.withUnsafeBytes(FlowRecord.parsePiece))
    }
}

