import Foundation
import Policy
import XCTest

/// `vpm run` refuses a configuration whose cooperative keys other users can read or change.
final class KeysExposureTests: XCTestCase {
    static let withKeys = """
        virtual-ports: 20000-20999
        ports: [9000]
        applications: {acme: {}}
        cooperative:
          peers: [{network: 198.18.0.2, key: \(String(repeating: "ab", count: 32))}]
        """

    var path = ""

    override func setUpWithError() throws {
        path = NSTemporaryDirectory() + "vpm-keys-\(getpid())-\(UUID().uuidString).yaml"
        try Self.withKeys.write(toFile: path, atomically: true, encoding: .utf8)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: path) }

    func exposure(mode: Int) throws -> String? {
        try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: path)
        return try Configuration.load(path: path).keysExposure(path: path)
    }

    func testOnlyTheOwnerMayReadAFileWithKeys() throws {
        XCTAssertNil(try exposure(mode: 0o600))
        XCTAssertNil(try exposure(mode: 0o400))
        let readable = try XCTUnwrap(try exposure(mode: 0o644))
        XCTAssertTrue(readable.contains("every user can read it (mode 644)"), readable)
        XCTAssertTrue(readable.contains("chmod 600 \(path)") && readable.contains("--allow-exposed-keys"), readable)
        XCTAssertTrue(try exposure(mode: 0o602)?.contains("every user can write it") ?? false)
    }

    func testAFileWithoutKeysIsNeverExposed() throws {
        try "virtual-ports: 20000-20999\nports: [9000]\n".write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertNil(try exposure(mode: 0o666))
    }

    /// Group root may read (0640 root:root); another group may not; nor may a file another
    /// user owns (that user could read the keys or change them). chown needs root.
    func testGroupsAndOwners() throws {
        try XCTSkipUnless(getuid() == 0, "chown to another user and group needs root (CI runs as root)")
        XCTAssertEqual(chown(path, 0, 0), 0)
        XCTAssertNil(try exposure(mode: 0o640))
        XCTAssertEqual(chown(path, 0, 65534), 0)
        XCTAssertTrue(try exposure(mode: 0o640)?.contains("the members of group 65534 can read it") ?? false)
        XCTAssertNil(try exposure(mode: 0o600))
        XCTAssertEqual(chown(path, 65534, 0), 0)
        XCTAssertTrue(try exposure(mode: 0o600)?.contains("belongs to user 65534") ?? false)
    }
}
