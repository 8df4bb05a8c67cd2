import Policy
import XCTest

final class OverloadTests: XCTestCase {
    static let base = "virtual-ports: 20000-20999\nports: [9000]\n"

    func testFailClosedUnlessTheFileSaysOtherwise() throws {
        XCTAssertEqual(try Configuration.parse(Self.base).overload, .failClosed)
        XCTAssertEqual(try Configuration.parse(Self.base + "overload: fail-open\n").overload, .failOpen)
        XCTAssertEqual(try Configuration.parse(Self.base + "overload: fail-closed\n").overload, .failClosed)
    }

    func testAnythingElseSaysTheChoices() {
        XCTAssertThrowsError(try Configuration.parse(Self.base + "overload: open\n")) { error in
            XCTAssertEqual("\(error)", "<config>:3:11: 'overload' must be fail-closed or fail-open; found 'open'")
        }
    }

    func testChangingItNeedsARestart() throws {
        let changes = try Configuration.parse(Self.base).changes(to: Configuration.parse(Self.base + "overload: fail-open\n"))
        XCTAssertEqual(changes.needRestart, ["overload"])
    }
}
