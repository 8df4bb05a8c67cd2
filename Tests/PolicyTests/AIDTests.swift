import XCTest
import Policy

final class AIDTests: XCTestCase {
    // Names go through variables: `AID("literal")` is a string literal conversion, which traps when invalid.
    func testAcceptsTheAllowedAlphabet() {
        for name in ["acme", "Tenant_7.blue-2", "0", String(repeating: "a", count: 64)] {
            XCTAssertEqual(AID(name)?.name, name)
        }
    }

    func testRejectsEmptyLongAndOtherCharacters() {
        for name in ["", String(repeating: "a", count: 65), "ac me", "acme/1", "äcme", "acme\n"] {
            XCTAssertNil(AID(name), name)
        }
    }

    func testLiteralsCompareAndPrintByName() {
        let acme: AID = "acme"
        let globex: AID = "globex"
        XCTAssertLessThan(acme, globex)
        XCTAssertEqual("\(acme)", "acme")
        XCTAssertEqual(acme, AID("acme"))
    }
}
