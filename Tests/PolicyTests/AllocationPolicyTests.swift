import Policy
import XCTest

final class AllocationPolicyTests: XCTestCase {
    let head = "virtual-ports: 20000-20001\nports: [9000]\n"

    func testDefaultIsFailAtOnce() throws {
        let configuration = try Configuration.parse(head)
        XCTAssertEqual(configuration.allocation, AllocationPolicy(whenExhausted: .fail, waitTimeout: 10))
    }

    func testWaitWithTimeout() throws {
        let configuration = try Configuration.parse(head + "allocation: {when-exhausted: wait, wait-timeout: 2m}\n")
        XCTAssertEqual(configuration.allocation, AllocationPolicy(whenExhausted: .wait, waitTimeout: 120))
    }

    func testUnknownModeNamesTheChoicesAndLine() {
        XCTAssertThrowsError(try Configuration.parse(head + "allocation:\n  when-exhausted: queue\n", file: "vpm.yaml")) { error in
            let error = error as! ConfigurationError
            XCTAssertEqual(error.line, 4)
            XCTAssertTrue(error.message.contains("fail or wait"), error.message)
        }
    }

    func testBadTimeoutAndUnknownKey() {
        XCTAssertThrowsError(try Configuration.parse(head + "allocation: {wait-timeout: soon}\n")) { error in
            XCTAssertEqual((error as! ConfigurationError).line, 3)
        }
        XCTAssertThrowsError(try Configuration.parse(head + "allocation: {when-full: wait}\n")) { error in
            XCTAssertTrue((error as! ConfigurationError).message.contains("when-exhausted"), "\(error)")
        }
    }

    func testApplicationByExecutable() throws {
        let configuration = try Configuration.parse(head + "applications: {acme: {executables: [/usr/sbin/nginx]}}\n")
        XCTAssertEqual(configuration.application(executable: "/usr/sbin/nginx")?.aid, "acme")
        XCTAssertNil(configuration.application(executable: "/usr/bin/socat"))
    }
}
