import Decision
@testable import Engine
import FlowTable
import Netfilter
import Packet
import Policy
import XCTest

/// `vpm stats`' "first packet to verdict": each connection start is timed once (admitted or
/// refused), later packets of a flow are not, and a held SYN's time includes the wait for
/// its negotiation.
final class FirstVerdictTimingTests: XCTestCase {
    let server = IPAddress(198, 18, 0, 1)

    func pipeline(_ extra: String = "") throws -> PacketPipeline {
        let configuration = try Configuration.parse("""
            virtual-ports: 20000-20999
            ports: [9000]
            applications: {acme: {instances: {9000: 20017}}}
            sources: [{from: 198.18.1.0/24, aid: acme}]
            \(extra)
            """)
        return PacketPipeline(configuration: configuration, store: SharedFlowTable(FlowTable(capacity: 8)))
    }

    func run(_ pipeline: inout PacketPipeline, _ bytes: [UInt8], hook: UInt8 = 0, receivedAt: UInt64?) -> Verdict {
        var bytes = bytes
        return bytes.withUnsafeMutableBytes { buffer in
            pipeline.process(QueuedPacket(id: 1, hardwareProtocol: 0x0800, hook: hook, mark: nil, payload: buffer,
                                          originalLength: buffer.count, info: [], outputInterface: 2),
                             now: 1000, receivedAt: receivedAt)
        }
    }

    func testEachConnectionStartIsTimedOnceAndNothingElse() throws {
        var pipeline = try pipeline()
        let client = IPAddress(198, 18, 1, 2), stranger = IPAddress(198, 18, 9, 9)
        let arrived = MonotonicClock.microseconds() - 300  // the batch arrived 300 µs ago
        _ = run(&pipeline, try syn(from: client, 40000, to: server, 9000), receivedAt: arrived)
        _ = run(&pipeline, try syn(from: client, 40000, to: server, 9000, flags: [.ack]), receivedAt: arrived)
        _ = run(&pipeline, try syn(from: stranger, 40001, to: server, 9000), receivedAt: arrived)  // refused
        _ = run(&pipeline, try syn(from: client, 40002, to: server, 9000), receivedAt: nil)  // not timed
        let counters = pipeline.counters
        XCTAssertEqual(counters.connectionsDecided, 3, "two admitted, one refused")
        XCTAssertEqual(counters.firstVerdict.count, 2, "only the packets with a batch time")
        XCTAssertGreaterThanOrEqual(counters.firstVerdict.sumMicroseconds, 600)
        // 300 µs each at least (the batch's age), how much more depends on the machine's load
        // (a busy CI run put both in (500, 1000]): none below the (250, 500] µs bucket.
        let index = LatencyHistogram.boundsMicroseconds.firstIndex(of: 500)!
        XCTAssertEqual(counters.firstVerdict.buckets[..<index].reduce(0, +), 0, "\(counters.firstVerdict.buckets)")
        XCTAssertEqual(counters.firstVerdict.buckets[index...].reduce(0, +), 2, "\(counters.firstVerdict.buckets)")
    }

    func testAHeldSYNIsTimedWhenItsNegotiationEnds() throws {
        let key = String(repeating: "ab", count: 32)
        let clients = ClientSockets()
        let configuration = try Configuration.parse("""
            virtual-ports: 20000-20999
            ports: [9000]
            applications: {acme: {instances: {9000: 20017}}}
            cooperative: {peers: [{network: 198.18.0.1, key: \(key)}]}
            """)
        var pipeline = PacketPipeline(configuration: configuration, store: SharedFlowTable(FlowTable(capacity: 8)), clients: clients)
        let client = IPAddress(198, 18, 0, 2)
        clients.register(transport: .tcp, address: client, port: 42000, aid: "acme", now: 1000)
        let arrived = MonotonicClock.microseconds() - 30_000  // as if the negotiation took 30 ms
        XCTAssertEqual(run(&pipeline, try syn(from: client, 42000, to: server, 9000), hook: 3, receivedAt: arrived), .hold)
        XCTAssertEqual(pipeline.counters.firstVerdict.count, 0, "held: no verdict yet")
        pipeline.complete(pipeline.takeNegotiations()[0].key, virtualPort: 20500, peer: "198.18.0.1:9901", now: 1001) { _, _ in }
        let counters = pipeline.counters
        XCTAssertEqual(counters.connectionsDecided, 1)
        XCTAssertEqual(counters.firstVerdict.count, 1)
        XCTAssertGreaterThanOrEqual(counters.firstVerdict.sumMicroseconds, 30_000)
        XCTAssertLessThan(counters.firstVerdict.sumMicroseconds, 30_000_000)
    }
}
