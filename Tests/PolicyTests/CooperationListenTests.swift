import Packet
import Policy
import XCTest

/// `cooperative: {listen: …}`: a port (every address of both families), an address and a
/// port in either family, or a list of them; mistakes point at their line.
final class CooperationListenTests: XCTestCase {
    func parse(_ cooperative: String) throws -> Configuration {
        try Configuration.parse("virtual-ports: 20000-20999\nports: [9000]\n" + cooperative)
    }

    func testOffUnlessConfigured() throws {
        XCTAssertEqual(try parse("").cooperation.listeners, [])
        XCTAssertEqual(try parse("cooperative: {local: true}").cooperation.listeners, [])
    }

    func testAPortMeansEveryAddressOfBothFamilies() throws {
        let listeners = try parse("cooperative: {listen: 9901}").cooperation.listeners
        XCTAssertEqual(listeners, [Cooperation.Listener(port: 9901)])
        XCTAssertEqual(listeners.map(\.description), ["*:9901"])
    }

    func testAddressesOfEitherFamily() throws {
        let one = try parse("cooperative: {listen: 198.18.0.1:9901}").cooperation.listeners
        XCTAssertEqual(one, [Cooperation.Listener(address: IPAddress("198.18.0.1"), port: 9901)])
        let both = try parse("""
            cooperative:
              listen: [198.18.0.1:9901, "[2001:db8::1]:9902"]
            """).cooperation.listeners
        XCTAssertEqual(both.map(\.description), ["198.18.0.1:9901", "[2001:db8::1]:9902"])
        XCTAssertEqual(both[1].address, IPAddress("2001:db8::1"))
    }

    func testMistakesPointAtTheLine() {
        for (text, words) in [("cooperative: {listen: 0}", "a port such as 9901"),
                              ("cooperative: {listen: 70000}", "a port such as 9901"),
                              ("cooperative: {listen: localhost:9901}", "ADDRESS:PORT"),
                              ("cooperative: {listen: 198.18.0.1}", "ADDRESS:PORT"),
                              ("cooperative: {listen: 198.18.0.0/24}", "ADDRESS:PORT"),
                              ("cooperative: {listen: []}", "'listen' is empty"),
                              ("cooperative: {listen: [[2001:db8::1]:9901]}", "quote IPv6 ones"),
                              ("cooperative: {listen: [9901, 198.18.0.1:9901]}", "twice"),
                              ("cooperative: {listen: [198.18.0.1:9901, 198.18.0.1:9901]}", "twice")] {
            XCTAssertThrowsError(try parse(text), text) { error in
                let problem = error as? ConfigurationError
                XCTAssertEqual(problem?.line, 3, text)
                XCTAssertTrue(problem?.message.contains(words) ?? false, "\(text): \(error)")
            }
        }
    }
}
