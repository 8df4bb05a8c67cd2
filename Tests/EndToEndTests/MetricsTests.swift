import Control
import Foundation
import MetricsEndpoint
import NetworkLab
import TestSupport
import XCTest

/// The metrics endpoint against the real engine: after known traffic (a transfer checked
/// with sha256, a refused client) a scrape with curl and `vpm stats --json` agree on every
/// counter; flows per AID and the datapath are there too.
final class MetricsTests: XCTestCase {
    static let metrics = """
        queues: 2
        metrics: {listen: 127.0.0.1:9464}
        """

    func testAScrapeAndVpmStatsAgreeOnEveryCounter() throws {
        try Privileged.withAcmeEngine("metrics", extraConfiguration: Self.metrics) { lab, engine, directory in
            try Privileged.uploadToAcme(lab, directory: directory, megabytes: 2)
            let refused = try lab.run(lab.clients[1], ["socat", "-u", "OPEN:/dev/null", "TCP:\(lab.server.address):9000,connect-timeout=5"])
            XCTAssertNotEqual(refused.status, 0, "a client of no AID is refused")
            Thread.sleep(forTimeInterval: 1)  // the queue threads publish their counters between batches

            // Kernel datapath: the upload was decided in the kernel, which sends no event for
            // it; the table finds it in a conntrack dump (every 5 s, and for `vpm flows`).
            _ = try engine.flows(json: true)
            let scrape = try lab.checked(lab.server, ["curl", "-sS", "--max-time", "10", "http://127.0.0.1:9464/metrics"]).standardOutput
            let statistics = try JSONDecoder().decode(EngineStatistics.self, from: Data(try engine.stats(json: true).standardOutput.utf8))
            let samples = PrometheusText.samples(scrape)
            for counter in EngineStatistics.counters {
                let name = MetricsRenderer.name(counter)
                XCTAssertEqual(PrometheusText.total(samples, name), Double(statistics[keyPath: counter.value]), "\(name) and vpm stats' \(counter.key)")
                if counter.scope == .queue {
                    XCTAssertNotNil(samples[name + #"{queue="0"}"#], "\(name) per queue:\n\(scrape)")
                    XCTAssertNotNil(samples[name + #"{queue="1"}"#], "\(name) per queue:\n\(scrape)")
                }
            }
            if Privileged.datapath == "socket" {
                // Neither connection reached the engine: the program steered the upload and
                // refused the other client.
                XCTAssertEqual(statistics.packetsQueued, 0)
                XCTAssertEqual(statistics.connectionsDecided, 0)
                XCTAssertGreaterThanOrEqual(statistics.flowsRefusedInKernel, 1, "the client of no AID")
                XCTAssertEqual(samples[#"vpm_refused_in_kernel_by_reason_total{reason="noApplication"}"#],
                               statistics.reasonsInKernel["noApplication"].map { Double($0) }, scrape)
                XCTAssertGreaterThanOrEqual(statistics.flowsDecidedInKernel, 1, "the upload")
            } else {
                XCTAssertGreaterThan(statistics.packetsQueued, 0)
                XCTAssertGreaterThanOrEqual(statistics.refused, 1)
                for (reason, value) in statistics.reasons {
                    let byReason = samples.filter { $0.key.hasPrefix("vpm_drops_by_reason_total{") && $0.key.contains(#"reason="\#(reason)""#) }
                    XCTAssertEqual(byReason.values.reduce(0, +), Double(value), reason)
                }
                XCTAssertNotNil(statistics.reasons["noApplication"], "the refused client is counted by reason")
                // Every connection start the engine decided was timed (the upload's, unless the
                // kernel decided it from the engine's maps; the refused one), and the histogram
                // reads the same in both.
                XCTAssertGreaterThanOrEqual(statistics.connectionsDecided, Privileged.decidesInKernel ? 1 : 2)
                if Privileged.decidesInKernel { XCTAssertGreaterThanOrEqual(statistics.flowsDecidedInKernel, 1, "the upload") }
            }
            XCTAssertEqual(statistics.firstVerdict.count, statistics.connectionsDecided)
            XCTAssertEqual(PrometheusText.total(samples, "vpm_first_verdict_seconds_count"), Double(statistics.firstVerdict.count), scrape)
            XCTAssertEqual(PrometheusText.total(samples, "vpm_first_verdict_seconds_sum") ?? 0, statistics.firstVerdict.sum, accuracy: 1e-6)
            let infinite = samples.filter { $0.key.hasPrefix("vpm_first_verdict_seconds_bucket{") && $0.key.hasSuffix(#"le="+Inf"}"#) }
            XCTAssertEqual(infinite.values.reduce(0, +), Double(statistics.connectionsDecided), scrape)
            XCTAssertEqual(samples[#"vpm_info{datapath="\#(Privileged.datapath)",version="\#(VPMVersion.current)"}"#], 1, scrape)
            let acme = try JSONDecoder().decode([FlowRecord].self, from: Data(try engine.flows(json: true).standardOutput.utf8))
                .filter { $0.aid == "acme" }.count
            XCTAssertEqual(samples[#"vpm_flows_by_aid{aid="acme",mode="source"}"#] ?? 0, Double(acme), scrape)
            XCTAssertGreaterThan(acme, 0)
            XCTAssertEqual(samples["vpm_virtual_ports_in_use"], 1)
            XCTAssertEqual(samples["vpm_virtual_ports_free"], 999)

            let missing = try lab.run(lab.server, ["curl", "-sS", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}",
                                                   "http://127.0.0.1:9464/"])
            XCTAssertEqual(missing.standardOutput, "404")
        }
    }

    /// A metrics address the engine cannot bind stops the start with the line to change.
    func testAnAddressNotOnTheHostIsACleanStartFailure() throws {
        try Privileged.requireRoot()
        let lab = try NetworkLab(name: Privileged.labName("metricsbad"), clientAddresses: ["198.18.1.2"])
        defer { lab.tearDown() }
        let directory = Privileged.scratchDirectory("metricsbad")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let configuration = Privileged.acmeConfiguration + Self.metrics.replacingOccurrences(of: "127.0.0.1:9464", with: "198.19.255.254:9464")
        let engine = try Privileged.engine(lab: lab, vpmExecutable: try Privileged.vpmExecutable(), directory: directory,
                                           configuration: configuration)
        XCTAssertThrowsError(try engine.start())
        XCTAssertTrue(engine.log.contains("cannot serve metrics on 198.19.255.254:9464 (configuration line "), engine.log)
        XCTAssertTrue(engine.log.contains("198.19.255.254 is not an address of this host (see `ip address`). Change metrics: listen"), engine.log)
        XCTAssertFalse(engine.log.contains("bind(descriptor:"), "no NIO internals: \(engine.log)")
        let rules = try lab.run(lab.server, ["iptables-save"]).standardOutput
        XCTAssertFalse(rules.contains("VPM-"), "a failed start leaves no rule:\n\(rules)")
    }
}
