import Control
import Foundation
import MetricsEndpoint
import TestSupport
import XCTest

final class MetricsRendererTests: XCTestCase {
    static func snapshot(scale: UInt64) -> MetricsSnapshot {
        var queue0 = EngineStatistics()
        var queue1 = EngineStatistics()
        var total = EngineStatistics()
        for (index, counter) in EngineStatistics.counters.enumerated() {
            let value = UInt64(index + 1) * scale
            total[keyPath: counter.value] = counter.scope == .queue ? 3 * value : value
            queue0[keyPath: counter.value] = counter.scope == .queue ? value : 0
            queue1[keyPath: counter.value] = counter.scope == .queue ? 2 * value : 0
        }
        queue0.reasons = ["noApplication": 4 * scale]
        queue1.firstVerdict = HistogramRecord(bounds: [0.0001, 0.01], buckets: [3 * scale, scale, 0], count: 4 * scale, sum: 0.25)
        total.reasons = ["noApplication": 4 * scale]
        total.negotiations = ["accepted": 5 * scale, "forged": scale]
        return MetricsSnapshot(version: "1.2.3", datapath: "kernel", queues: [(0, queue0), (1, queue1)], total: total,
                               flows: [.init(aid: "acme", mode: "source", count: 7)],
                               virtualPortsInUse: 2, virtualPortsFree: 998)
    }

    func testEveryCounterOfTheTableIsExportedWithItsValueAndHelp() {
        let renderer = MetricsRenderer()
        let text = renderer.render(Self.snapshot(scale: 1))
        let samples = PrometheusText.samples(text)
        for (index, counter) in EngineStatistics.counters.enumerated() {
            let name = MetricsRenderer.name(counter)
            XCTAssertTrue(text.contains("# HELP \(name) \(counter.help)"), name)
            XCTAssertTrue(text.contains("# TYPE \(name) \(counter.kind == .counter ? "counter" : "gauge")"), name)
            switch counter.scope {
            case .queue:
                XCTAssertEqual(samples[#"\#(name){queue="0"}"#], Double(index + 1), name)
                XCTAssertEqual(samples[#"\#(name){queue="1"}"#], Double(2 * (index + 1)), name)
            case .engine:
                XCTAssertEqual(samples[name], Double(index + 1), name)
            }
        }
        XCTAssertEqual(samples[#"vpm_drops_by_reason_total{queue="0",reason="noApplication"}"#], 4)
        XCTAssertEqual(samples[#"vpm_negotiations_total{outcome="accepted"}"#], 5)
        XCTAssertEqual(samples[#"vpm_flows_by_aid{aid="acme",mode="source"}"#], 7)
        XCTAssertEqual(samples[#"vpm_info{datapath="kernel",version="1.2.3"}"#], 1)
        XCTAssertEqual(samples["vpm_virtual_ports_free"], 998)
        XCTAssertEqual(MetricsRenderer.name(EngineStatistics.counters[0]), "vpm_packets_queued_total")
        // The first-verdict histogram, per queue, cumulative as Prometheus reads it.
        XCTAssertTrue(text.contains("# TYPE vpm_first_verdict_seconds histogram"), text)
        XCTAssertEqual(samples[#"vpm_first_verdict_seconds_bucket{queue="1",le="0.0001"}"#], 3)
        XCTAssertEqual(samples[#"vpm_first_verdict_seconds_bucket{queue="1",le="0.01"}"#], 4)
        XCTAssertEqual(samples[#"vpm_first_verdict_seconds_bucket{queue="1",le="+Inf"}"#], 4)
        XCTAssertEqual(samples[#"vpm_first_verdict_seconds_count{queue="1"}"#], 4)
        XCTAssertEqual(samples[#"vpm_first_verdict_seconds_sum{queue="1"}"#], 0.25)
        XCTAssertEqual(samples[#"vpm_first_verdict_seconds_count{queue="0"}"#], 0)
    }

    /// A second scrape shows the counters' new values, not the sum of both scrapes; a group
    /// whose flows ended reads 0.
    func testTheNextScrapeShowsTheCurrentValues() {
        let renderer = MetricsRenderer()
        _ = renderer.render(Self.snapshot(scale: 1))
        var later = Self.snapshot(scale: 10)
        later.flows = []
        let samples = PrometheusText.samples(renderer.render(later))
        XCTAssertEqual(samples[#"vpm_packets_queued_total{queue="1"}"#], 20)
        XCTAssertEqual(samples[#"vpm_negotiations_total{outcome="forged"}"#], 10)
        XCTAssertEqual(samples[#"vpm_flows_by_aid{aid="acme",mode="source"}"#], 0)
        XCTAssertEqual(samples["vpm_flows_active"], Double(EngineStatistics.counters.firstIndex { $0.key == "flowsActive" }! + 1) * 10)
    }

    /// The server answers GET /metrics over real HTTP on loopback, and says where the
    /// metrics are for any other path.
    func testTheServerAnswersOverHTTP() throws {
        let server = try MetricsServer(host: "127.0.0.1", port: 0) { Self.snapshot(scale: 1) }
        defer { server.stop() }
        let answer = try Self.get("/metrics", port: server.port)
        XCTAssertTrue(answer.hasPrefix("HTTP/1.0 200 OK"), answer)
        XCTAssertTrue(answer.contains("Content-Type: text/plain; version=0.0.4"), answer)
        XCTAssertTrue(answer.contains(#"vpm_packets_queued_total{queue="0"} 1"#), answer)
        let missing = try Self.get("/", port: server.port)
        XCTAssertTrue(missing.hasPrefix("HTTP/1.0 404"), missing)
        XCTAssertTrue(missing.contains("/metrics"), missing)
    }

    /// One HTTP/1.0 request over a plain socket; the whole answer.
    static func get(_ path: String, port: Int) throws -> String {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw POSIXError(.EIO) }
        defer { close(descriptor) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw POSIXError(.ECONNREFUSED) }
        let request = Array("GET \(path) HTTP/1.0\r\nHost: localhost\r\n\r\n".utf8)
        _ = request.withUnsafeBytes { send(descriptor, $0.baseAddress, $0.count, 0) }
        var answer: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
            if count <= 0 { break }
            answer += buffer[0..<count]
        }
        return String(decoding: answer, as: UTF8.self)
    }
}
