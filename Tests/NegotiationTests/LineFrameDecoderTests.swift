@testable import Negotiation
import NIOCore
import XCTest

final class LineFrameDecoderTests: XCTestCase {
    /// Feeds `chunks` one at a time, collecting lines until the decoder throws.
    private func run(_ chunks: [String], maximum: Int = 4096, endOfInput: Bool = false) -> (lines: [String], error: LineFrameDecoder.LineError?) {
        var decoder = LineFrameDecoder(maximumLength: maximum)
        var buffer = ByteBuffer()
        var lines = [String]()
        do throws(LineFrameDecoder.LineError) {
            for chunk in chunks {
                buffer.writeString(chunk)
                while let line = try decoder.nextLine(&buffer) {
                    lines.append(String(buffer: line))
                }
            }
            if endOfInput { try decoder.finish(&buffer) }
        } catch {
            return (lines, error)
        }
        return (lines, nil)
    }

    func testSplitsLinesAndKeepsTheNewline() {
        let result = run(["ab\ncd\n"])
        XCTAssertEqual(result.lines, ["ab\n", "cd\n"])
        XCTAssertNil(result.error)
    }

    func testLineArrivingOneByteAtATime() {
        XCTAssertEqual(run("hello world\n".map { String($0) }).lines, ["hello world\n"])
    }

    func testMaximumLengthIncludesTheNewline() {
        XCTAssertEqual(run(["1234567\n"], maximum: 8).lines, ["1234567\n"])
        XCTAssertEqual(run(["12345678\n"], maximum: 8).error, .tooLong(maximum: 8))
        XCTAssertEqual(run(["1234", "5678"], maximum: 8).error, .tooLong(maximum: 8), "refused before the newline arrives")
        XCTAssertEqual(run(["1234", "567"], maximum: 8).error, nil)
    }

    func testBytesWithoutNewlineAtEndOfInputAreTruncated() {
        let result = run(["ok\npartial"], endOfInput: true)
        XCTAssertEqual(result.lines, ["ok\n"])
        XCTAssertEqual(result.error, .truncated(bytes: 7))
        XCTAssertNil(run(["ok\n"], endOfInput: true).error)
        XCTAssertNil(run([], endOfInput: true).error)
    }
}
