import Foundation
@testable import Policy
import XCTest

/// docs/configuration.md and the parser agree: every top-level key has its `### \`key\``
/// section and every section a key; each section's table lists exactly the keys the
/// parser accepts there.
final class ConfigurationReferenceTests: XCTestCase {
    /// Section name → the keys its tables list (first column, a lowercase word in backticks).
    static func documentedKeys() throws -> [String: Set<String>] {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let text = try String(contentsOf: root.appendingPathComponent("docs/configuration.md"), encoding: .utf8)
        var sections: [String: Set<String>] = [:]
        var current: String?
        let heading = try NSRegularExpression(pattern: #"^### `([a-z-]+)`"#)
        let row = try NSRegularExpression(pattern: #"^\| `([a-z][a-z-]*)` \|"#)
        for line in text.split(separator: "\n").map(String.init) {
            let range = NSRange(line.startIndex..., in: line)
            if let match = heading.firstMatch(in: line, range: range), let name = Range(match.range(at: 1), in: line) {
                current = String(line[name])
                sections[current!, default: []] = []
            } else if line.hasPrefix("## ") {
                current = nil
            } else if let current, let match = row.firstMatch(in: line, range: range), let name = Range(match.range(at: 1), in: line) {
                sections[current]!.insert(String(line[name]))
            }
        }
        return sections
    }

    func testEveryKeyIsDocumentedAndEveryDocumentedKeyParses() throws {
        let documented = try Self.documentedKeys()
        XCTAssertEqual(Set(documented.keys), Set(ConfigurationParser.topLevelKeys), "top-level keys vs ### sections")
        let expected: [String: [String]] = [
            "applications": ConfigurationParser.applicationKeys,
            "sources": ConfigurationParser.sourceKeys,
            "flows": ConfigurationParser.flowKeys + ConfigurationParser.timeoutKeys.map(\.name),
            "allocation": ConfigurationParser.allocationKeys,
            "control": ConfigurationParser.controlKeys,
            "metrics": ConfigurationParser.metricsKeys,
            "cooperative": ConfigurationParser.cooperationKeys + ConfigurationParser.peerKeys,
            "fleet": ConfigurationParser.fleetKeys + ConfigurationParser.fleetTLSKeys,
            "tenants": ConfigurationParser.tenantKeys,
        ]
        for (section, keys) in expected {
            XCTAssertEqual(documented[section], Set(keys), "the keys of \(section) in docs/configuration.md vs the parser")
        }
        for section in Set(documented.keys).subtracting(expected.keys) {
            XCTAssertEqual(documented[section], [], "\(section) is a plain value; a table of keys there is not parsed")
        }
    }
}
