import Foundation
@testable import Negotiation
import XCTest

/// The Python sketch in docs/negotiation.md, run against the Swift server: the document
/// is enough to write a second implementation.
final class InteroperabilityTests: XCTestCase {
    func testThePythonSketchFromTheDocsTalksToTheServer() throws {
        let python = ["/usr/bin/python3", "/usr/local/bin/python3"].first { FileManager.default.isExecutableFile(atPath: $0) }
        guard let python else { throw XCTSkip("python3 is not installed") }
        let docs = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../docs/negotiation.md")
        let text = try String(contentsOf: docs, encoding: .utf8)
        let sketch = try XCTUnwrap(text.components(separatedBy: "```python\n").dropFirst().first?.components(separatedBy: "```").first)

        let server = NegotiationServer(host: "127.0.0.1", port: 0, key: { _ in Fixtures.key },
                                       handler: { request, _ in request.aid == "acme" ? .accepted(virtualPort: 20017) : .refused(reason: "no") })
        try server.start()
        defer { server.stop() }
        let port = try XCTUnwrap(server.boundPort)
        let script = sketch + """

            import socket, sys
            key = b"vpm-negotiation-test-key-32bytes"
            with socket.create_connection(("127.0.0.1", \(port)), timeout=5) as connection:
                connection.sendall(encode(request, key))
                answer = connection.makefile("rb").readline()
            body = decode(answer, key)
            assert body["inReplyTo"] == request["nonce"], body
            print(body["type"], body["virtualPort"])
            """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = ["-c", script]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        process.waitUntilExit()
        let printed = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        XCTAssertEqual(process.terminationStatus, 0)
        XCTAssertEqual(printed, "ack 20017\n")
        XCTAssertEqual(server.statistics.accepted, 1)
    }
}
