import Foundation
import TestSupport
import XCTest

/// The committed BPF object is the program's source compiled: building vpm needs no BPF
/// compiler, and a change to bpf/steer.bpf.c without `make bpf` fails here.
final class SteeringObjectTests: XCTestCase {
    func testTheCommittedObjectIsTheSourceCompiled() throws {
        let root = Privileged.packageRoot.path
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("vpm-steer-\(getpid()).c").path
        defer { try? FileManager.default.removeItem(atPath: output) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "\(root)/scripts/build-bpf.sh")
        process.arguments = [output]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let log = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, log)
        let fresh = try String(contentsOfFile: output, encoding: .utf8)
        let committed = try String(contentsOfFile: "\(root)/Sources/CSteering/steer_object.c", encoding: .utf8)
        XCTAssertTrue(fresh == committed, "Sources/CSteering/steer_object.c is not bpf/steer.bpf.c compiled: run `make bpf` and commit it")
    }
}
