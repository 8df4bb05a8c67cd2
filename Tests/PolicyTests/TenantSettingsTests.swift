import Policy
import XCTest

/// The `tenants:` section: defaults, what it must agree with, and who may make tenants.
final class TenantSettingsTests: XCTestCase {
    let head = "virtual-ports: 20000-20999\nports: [6379, 5353/udp, 9000]\napplications: {acme: {}}\n"

    func testDefaultsTakeEveryPortAndSixteenTenants() throws {
        let configuration = try Configuration.parse(head + "cooperative: {local: true}\ntenants: {}\n")
        let tenants = try XCTUnwrap(configuration.tenants)
        XCTAssertEqual(tenants.limit, 16)
        XCTAssertEqual(tenants.ports, configuration.initialPorts)
        XCTAssertEqual(tenants.prefix, "tenant")
        XCTAssertNil(try Configuration.parse(head).tenants, "no section: no tenants")
    }

    func testEveryKey() throws {
        let configuration = try Configuration.parse(head + """
            cooperative: {local: true}
            tenants: {users: [alice, "1001"], groups: [ci], limit: 4, ports: [6379, 5353/udp], prefix: job}
            """)
        XCTAssertEqual(configuration.tenants, TenantSettings(users: ["alice", "1001"], groups: ["ci"], limit: 4,
                                                             ports: [InitialPort(port: 6379), InitialPort(port: 5353, transport: .udp)], prefix: "job"))
    }

    func testMistakesNameTheirFix() {
        let cases: [(String, String)] = [
            ("tenants: {}\n", "add cooperative: {local: true}"),
            ("cooperative: {local: true}\ntenants: {ports: [5432]}\n", "tenants port 5432/tcp is not a multiplexed port; list it under 'ports' too"),
            ("cooperative: {local: true}\ntenants: {ports: []}\n", "tenants 'ports' is empty"),
            ("cooperative: {local: true}\ntenants: {limit: 0}\n", "'limit' is 0, out of range; it must be from 1 to 1022"),
            ("cooperative: {local: true}\ntenants: {prefix: 'a b'}\n", "does not make an AID"),
            ("cooperative: {local: true}\ntenants: {prefix: ac}\n", "application 'ac-me' starts with the tenants' prefix 'ac-'"),
            ("cooperative: {local: true}\ntenants: {owners: [alice]}\n", "owners"),
        ]
        for (text, expected) in cases {
            let input = text.contains("prefix: ac}") ? head.replacingOccurrences(of: "acme", with: "ac-me") + text : head + text
            XCTAssertThrowsError(try Configuration.parse(input), text) { error in
                XCTAssertTrue("\(error)".contains(expected), "\(text): \(error)")
            }
        }
    }

    func testOnlyTheNamedUsersAndGroupsMayMakeTenants() {
        let settings = TenantSettings(users: ["alice"], groups: ["ci"], ports: [])
        XCTAssertNil(settings.makingRefusal(for: Caller(uid: 0, gids: [0])))
        XCTAssertNil(settings.makingRefusal(for: Caller(uid: 1001, gids: [1001], userName: "alice")))
        XCTAssertNil(settings.makingRefusal(for: Caller(uid: 1002, gids: [1002, 2000], userName: "bob", groupNames: ["bob", "ci"])))
        let refusal = settings.makingRefusal(for: Caller(uid: 1003, gids: [1003], userName: "eve", groupNames: ["eve"]))
        XCTAssertEqual(refusal, "permission denied: eve (uid 1003) may not make tenants (tenants: allows users [alice] and groups [ci]); an operator can add the user to tenants.users or tenants.groups")
    }
}
