import Foundation
import NetworkLab
import TestSupport
import XCTest

/// `vpm translate`, the real engine process, moves a TCP connection from port 9000 to
/// 20017 between two namespaces; socat carries 10 MB each way and sha256 must match.
final class TranslateEndToEndTests: XCTestCase {
    struct Report: Decodable {
        struct Translator: Decodable {
            var ingressRewritten: UInt64
            var egressRewritten: UInt64
            var checksumIncremental: UInt64
            var checksumRecomputed: UInt64
            var segmentationOffload: UInt64
            var dropped: UInt64
        }
        struct Queue: Decodable { var verdictFailures: UInt64 }
        var translator: Translator
        var queue: Queue
    }

    private func transfer(_ tag: String, configure: (inout TranslationRun, NetworkLab) -> Void) throws -> Report {
        try Privileged.requireRoot()
        let lab = try NetworkLab(name: Privileged.labName(tag))
        defer { lab.tearDown() }
        let directory = Privileged.scratchDirectory(tag)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var run = TranslationRun(vpmExecutable: try Privileged.vpmExecutable())
        configure(&run, lab)
        let result = try run.run(in: lab, directory: directory)
        XCTAssertEqual(result.uploadSent, result.uploadReceived, "upload changed on the way")
        XCTAssertEqual(result.downloadSent, result.downloadReceived, "download changed on the way")
        XCTAssertFalse(result.rulesAfterStop.contains("VPM-"), "engine left its chains behind:\n\(result.rulesAfterStop)")
        let report = try JSONDecoder().decode(Report.self, from: Data(result.engineReport.utf8))
        XCTAssertGreaterThan(report.translator.ingressRewritten, 0)
        XCTAssertGreaterThan(report.translator.egressRewritten, 0)
        XCTAssertEqual(report.translator.dropped, 0)
        XCTAssertEqual(report.queue.verdictFailures, 0)
        return report
    }

    /// GSO on, offloads on: super-packets with partial checksums, fully recomputed.
    func testTenMegabytesEachWayWithSegmentationOffload() throws {
        let report = try transfer("gso") { run, _ in run.segmentationOffload = true }
        XCTAssertGreaterThan(report.translator.segmentationOffload, 0, "expected GSO super-packets")
        XCTAssertGreaterThan(report.translator.checksumRecomputed, 0, "expected partial checksums")
    }

    /// GSO off and checksum offload off on both ends: every packet arrives with a complete
    /// checksum, so every rewrite takes the RFC 1624 incremental path.
    func testTenMegabytesEachWayWithCompleteChecksums() throws {
        let report = try transfer("nogso") { run, lab in
            run.segmentationOffload = false
            run.serverSetup = [["ethtool", "-K", lab.server.interface, "tx", "off"]]
            run.clientSetup = [["ethtool", "-K", lab.client.interface, "tx", "off"]]
        }
        XCTAssertEqual(report.translator.segmentationOffload, 0)
        XCTAssertGreaterThan(report.translator.checksumIncremental, 0)
        XCTAssertEqual(report.translator.checksumRecomputed, 0, "expected complete checksums only")
    }
}
