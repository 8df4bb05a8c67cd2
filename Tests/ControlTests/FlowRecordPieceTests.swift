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
    }
}

