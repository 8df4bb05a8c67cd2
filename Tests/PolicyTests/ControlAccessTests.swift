import Policy
import XCTest

/// Who may read and who may register instances of which AID: the configuration's words,
/// checked against a caller the kernel vouched for.
final class ControlAccessTests: XCTestCase {
    let text = """
        virtual-ports: 20000-20999
        ports: [9000]
        control: {group: vpm}
        applications:
          acme: {users: [alice, "1002"]}
          globex: {groups: [globex-ops, "64200"]}
          initech: {}
        """

    func configuration() throws -> Configuration { try Configuration.parse(text) }

    let alice = Caller(uid: 1001, gids: [1001, 500], userName: "alice", groupNames: ["alice", "vpm"])

    func testUsersByNameOrNumber() throws {
        let configuration = try configuration()
        XCTAssertNil(configuration.registrationRefusal(aid: AID("acme"), for: alice))
        XCTAssertNil(configuration.registrationRefusal(aid: AID("acme"), for: Caller(uid: 1002, gids: [1002])))
        XCTAssertNotNil(configuration.registrationRefusal(aid: AID("acme"), for: Caller(uid: 1003, gids: [1003])))
    }

    func testGroupsByNameOrNumber() throws {
        let configuration = try configuration()
        let byName = Caller(uid: 2000, gids: [2000, 77], groupNames: ["x", "globex-ops"])
        let byNumber = Caller(uid: 2001, gids: [2001, 64200])
        XCTAssertNil(configuration.registrationRefusal(aid: AID("globex"), for: byName))
        XCTAssertNil(configuration.registrationRefusal(aid: AID("globex"), for: byNumber))
    }

    func testRefusalNamesTheAIDTheCallerAndTheRule() throws {
        let refusal = try XCTUnwrap(try configuration().registrationRefusal(aid: AID("globex"), for: alice))
        XCTAssertEqual(refusal, "permission denied: alice (uid 1001) may not run instances of AID globex (applications.globex allows no users and groups [globex-ops, 64200]); an operator can add the user to its users: or groups:")
        // An AID that names nobody is root's alone.
        XCTAssertNotNil(try configuration().registrationRefusal(aid: AID("initech"), for: alice))
    }

    func testRootMayDoAnything() throws {
        let root = Caller(uid: 0, gids: [0])
        XCTAssertNil(try configuration().registrationRefusal(aid: AID("initech"), for: root))
        XCTAssertNil(try configuration().readRefusal(for: root))
    }

    func testReadingNeedsTheControlGroup() throws {
        let configuration = try configuration()
        XCTAssertNil(configuration.readRefusal(for: alice))
        XCTAssertEqual(configuration.readRefusal(for: Caller(uid: 1003, gids: [1003], userName: "mallory")),
                       "permission denied: mallory (uid 1003) is not in the control group vpm")
        var rootOnly = configuration
        rootOnly.control = .rootOnly
        XCTAssertNotNil(rootOnly.readRefusal(for: alice))
    }

    func testBadPrincipalsAreRejectedWithTheLine() {
        for (bad, line) in [("control: {group: \"a b\"}", 3), ("control: {grup: vpm}", 3)] {
            XCTAssertThrowsError(try Configuration.parse("virtual-ports: 20000-20999\nports: [9000]\n\(bad)\n")) { error in
                XCTAssertEqual((error as? ConfigurationError)?.line, line, "\(error)")
            }
        }
        XCTAssertThrowsError(try Configuration.parse("virtual-ports: 20000-20999\nports: [9000]\napplications:\n  acme: {users: [\"-rf\"]}\n"))
    }
}
