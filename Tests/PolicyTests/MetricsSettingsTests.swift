import Packet
import Policy
import XCTest

/// `metrics: {listen: …}`: off by default, either family, a port required, errors at the line.
final class MetricsSettingsTests: XCTestCase {
    func parse(_ metrics: String) throws -> Configuration {
        try Configuration.parse("virtual-ports: 20000-20999\nports: [9000]\n" + metrics)
    }

    func testOffUnlessConfigured() throws {
        XCTAssertNil(try parse("").metrics)
    }

    func testEitherFamily() throws {
        let four = try XCTUnwrap(try parse("metrics: {listen: 127.0.0.1:9464}").metrics)
        XCTAssertEqual(four.address, IPAddress("127.0.0.1"))
        XCTAssertEqual(four.port, 9464)
        XCTAssertEqual(four.endpoint, "127.0.0.1:9464")
        let six = try XCTUnwrap(try parse("metrics: {listen: \"[::1]:9100\"}").metrics)
        XCTAssertEqual(six.address, IPAddress("::1"))
        XCTAssertEqual(six.endpoint, "[::1]:9100")
    }

    func testMistakesPointAtTheLine() {
        for (text, words) in [("metrics: {listen: 127.0.0.1}", "needs a port"),
                              ("metrics: {listen: localhost:80}", "an address and a port"),
                              ("metrics: {listen: 127.0.0.1:0}", "an address and a port"),
                              ("metrics: {}", "listen"),
                              ("metrics: {listen: 127.0.0.1:1, path: /x}", "path")] {
            XCTAssertThrowsError(try parse(text), text) { error in
                let problem = error as? ConfigurationError
                XCTAssertEqual(problem?.line, 3, text)
                XCTAssertTrue(problem?.message.contains(words) ?? false, "\(text): \(error)")
            }
        }
    }
}
