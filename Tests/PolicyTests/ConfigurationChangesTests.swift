import Policy
import XCTest

/// What `vpm reload` may apply: sources and timeouts at once, anything else needs a restart;
/// moving lines around changes nothing.
final class ConfigurationChangesTests: XCTestCase {
    static let base = """
        virtual-ports: 20000-20999
        ports: [9000]
        applications:
          acme: {instances: {9000: 20017}}
          globex: {instances: {9000: 20018}}
        sources:
          - {from: 198.18.1.0/24, aid: acme}
        """

    func changes(_ newer: String) throws -> ConfigurationChanges {
        try Configuration.parse(Self.base).changes(to: Configuration.parse(newer))
    }

    func testTheSameRulesOnOtherLinesAreNoChange() throws {
        XCTAssertTrue(try changes("# moved down a line\n\n" + Self.base).isEmpty)
    }

    func testSourcesAndTimeoutsAreReloadable() throws {
        let newer = Self.base + "\n  - {from: 198.18.9.9, aid: globex}\nflows: {timeouts: {established: 1h}}\n"
        XCTAssertEqual(try changes(newer), ConfigurationChanges(reloadable: ["sources", "flows.timeouts"], needRestart: []))
        let moved = Self.base.replacingOccurrences(of: "aid: acme}", with: "aid: globex}")
        XCTAssertEqual(try changes(moved).reloadable, ["sources"])
    }

    /// Applications come and go, and change users, while running; their static instances
    /// (virtual ports the file states) do not.
    func testApplicationsAreReloadableUnlessTheirStaticInstancesChange() throws {
        let added = Self.base.replacingOccurrences(of: "  globex: {instances: {9000: 20018}}", with: "  globex: {instances: {9000: 20018}}\n  initech: {users: [alice]}")
        XCTAssertEqual(try changes(added), ConfigurationChanges(reloadable: ["applications"], needRestart: []))
        let moreUsers = Self.base.replacingOccurrences(of: "acme: {instances: {9000: 20017}}", with: "acme: {instances: {9000: 20017}, users: [bob]}")
        XCTAssertEqual(try changes(moreUsers).reloadable, ["applications"])
        let removed = Self.base.replacingOccurrences(of: "  globex: {instances: {9000: 20018}}\n", with: "")
        XCTAssertEqual(try changes(removed).needRestart, ["applications"], "globex's static instance goes with it")
    }

    func testEverythingElseNeedsARestart() throws {
        let newer = Self.base
            .replacingOccurrences(of: "ports: [9000]", with: "ports: [9000, 9001]")
            .replacingOccurrences(of: "20018", with: "20019")
            + "\nmetrics: {listen: 127.0.0.1:9464}\ncooperative: {local: true}\nflows: {capacity: 10}\n"
        let found = try changes(newer)
        XCTAssertEqual(found.needRestart, ["ports", "applications", "flows.capacity", "metrics", "cooperative"])
        XCTAssertEqual(found.reloadable, [])
    }
}
