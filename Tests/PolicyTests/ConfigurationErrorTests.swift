import XCTest
import Policy

final class ConfigurationErrorTests: XCTestCase {
    func testDescriptionReadsLikeACompilerDiagnostic() {
        XCTAssertEqual(ConfigurationError(file: "vpm.yaml", line: 14, column: 7, message: "bad").description, "vpm.yaml:14:7: bad")
        XCTAssertEqual(ConfigurationError(file: "vpm.yaml", line: 14, message: "bad").description, "vpm.yaml:14: bad")
        XCTAssertEqual(ConfigurationError(file: "vpm.yaml", message: "bad").description, "vpm.yaml: bad")
    }
}
