@testable import Control
import Foundation
import XCTest

/// The control protocol's messages as they travel, in Golden/*.json: each decodes into its
/// Swift type and encodes back to the same JSON. A change to a message's shape fails here,
/// without root, before it breaks a `vpm` CLI or `vpm exec` talking to another version.
final class ControlProtocolGoldenTests: XCTestCase {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Golden")

    func golden(_ name: String) throws -> Data {
        try Data(contentsOf: Self.directory.appendingPathComponent("\(name).json"))
    }

    /// Encodes `value` and compares it with the golden file as JSON objects (key order and
    /// spacing aside).
    func assertRoundTrip<Message: Codable & Equatable>(_ type: Message.Type, _ name: String,
                                                       file: StaticString = #filePath, line: UInt = #line) throws {
        let text = try golden(name)
        let message = try JSONDecoder().decode(type, from: text)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let again = try encoder.encode(message)
        let expected = try JSONSerialization.jsonObject(with: text) as? NSDictionary
        let actual = try JSONSerialization.jsonObject(with: again) as? NSDictionary
        XCTAssertEqual(actual, expected, "\(name): \(String(decoding: again, as: UTF8.self))", file: file, line: line)
        XCTAssertEqual(try JSONDecoder().decode(type, from: again), message, file: file, line: line)
    }

    func testRequests() throws {
        try assertRoundTrip(ControlRequest.self, "request-flows")
        try assertRoundTrip(ControlRequest.self, "request-flows-pieces")
        try assertRoundTrip(ControlRequest.self, "request-bind")
        try assertRoundTrip(ControlRequest.self, "request-connect")
        let bind = try JSONDecoder().decode(ControlRequest.self, from: golden("request-bind"))
        XCTAssertEqual(bind.command, .bind)
        XCTAssertEqual(bind.initialPort, 9000)
        XCTAssertEqual(bind.pid, 4242)
        XCTAssertTrue(try JSONDecoder().decode(ControlRequest.self, from: golden("request-flows-pieces")).isStreamed)
        XCTAssertFalse(try JSONDecoder().decode(ControlRequest.self, from: golden("request-flows")).isStreamed)
    }

    func testResponses() throws {
        for name in ["response-bind", "response-refused", "response-apps", "response-flows", "response-flows-piece"] {
            try assertRoundTrip(ControlResponse.self, name)
        }
        XCTAssertEqual(try JSONDecoder().decode(ControlResponse.self, from: golden("response-bind")).virtualPort, 20017)
        XCTAssertEqual(try JSONDecoder().decode(ControlResponse.self, from: golden("response-refused")).errorCode, "EACCES")
    }
}
