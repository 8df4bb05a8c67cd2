import Decision
@testable import Engine
import FlowTable
import Netfilter
import Packet
import Policy
import XCTest

/// The cooperative and local decisions with byte fixtures (no kernel, no peer engine).
final class PacketPipelineModesTests: XCTestCase {
    let key = String(repeating: "ab", count: 32)
    let client = IPAddress(198, 18, 0, 2), server = IPAddress(198, 18, 0, 1)

    func makeProcessor(_ cooperative: String, clients: ClientSockets) throws -> PacketPipeline {
        let configuration = try Configuration.parse("""
            virtual-ports: 20000-20999
            ports: [9000]
            applications: {acme: {instances: {9000: 20017}}, initech: {}}
            cooperative: \(cooperative)
            """)
        return PacketPipeline(configuration: configuration, store: SharedFlowTable(FlowTable(capacity: 8)), clients: clients)
    }

    func process(_ processor: inout PacketPipeline, _ bytes: inout [UInt8], outputInterface: UInt32) -> Verdict {
        bytes.withUnsafeMutableBytes { buffer in
            processor.process(QueuedPacket(id: 7, hardwareProtocol: 0x0800, hook: 3, mark: nil, payload: buffer,
                                           originalLength: buffer.count, info: [], outputInterface: outputInterface), now: 1000)
        }
    }

    func destinationPort(_ bytes: inout [UInt8]) throws -> UInt16 {
        try bytes.withUnsafeMutableBytes { try IPPacket($0).destinationPort }
    }

    func testLocalClientReachesTheInstanceOfItsAID() throws {
        let clients = ClientSockets()
        var processor = try makeProcessor("{local: true}", clients: clients)
        let loopback = IPAddress.loopbackIPv4
        clients.register(transport: .tcp, address: loopback, port: 41000, aid: "acme", now: 1000)
        var packet = try syn(from: loopback, 41000, to: loopback, 9000)
        // Rewritten, and marked as decided: VPM-INPUT lets only such packets reach a virtual port over lo.
        let decided = KernelMark(mode: .local, slot: 1, virtualPort: 20017).value
        XCTAssertEqual(process(&processor, &packet, outputInterface: 1), .acceptModified(length: packet.count, mark: decided))
        XCTAssertEqual(try destinationPort(&packet), 20017)
        XCTAssertEqual(processor.store.withLock { $0.snapshot() }.first?.mode, .local)

        clients.register(transport: .tcp, address: loopback, port: 41001, aid: "initech", now: 1000)
        var refused = try syn(from: loopback, 41001, to: loopback, 9000)
        XCTAssertEqual(process(&processor, &refused, outputInterface: 1), Verdict(.accept, mark: RuleSet.refuseMark))

        var plain = try syn(from: loopback, 41002, to: loopback, 9000)  // no AID: not ours
        XCTAssertEqual(process(&processor, &plain, outputInterface: 1), .accept)
    }

    /// `syn(...)` with loopback's MSS option (65,495), checksums filled.
    func loopbackSYN(from source: IPAddress, _ port: UInt16, to destination: IPAddress, _ destinationPort: UInt16) throws -> [UInt8] {
        var bytes = try syn(from: source, port, to: destination, destinationPort)
        bytes += [0x02, 0x04, 0xFF, 0xD7]
        bytes[2] = 0; bytes[3] = UInt8(bytes.count)
        bytes[20 + 12] = 6 << 4
        try bytes.withUnsafeMutableBytes { buffer in
            var packet = try IPPacket(buffer)
            packet.fillTransportChecksum()
            var header = IPv4Header(unchecked: buffer)
            header.fillHeaderChecksum()
        }
        return bytes
    }

    func maximumSegmentSize(_ bytes: inout [UInt8]) throws -> (UInt16?, Bool) {
        try bytes.withUnsafeMutableBytes { let packet = try IPPacket($0); return (packet.maximumSegmentSize, packet.transportChecksumIsValid()) }
    }

    /// Userspace datapath, loopback: every SYN on the queue leaves announcing an MSS whose
    /// segments NFQUEUE copies whole (65,531 bytes): the translated one and a program's of no
    /// AID alike; the checksum stays valid.
    func testLoopbackSYNsAnnounceSegmentsTheQueueCanCopy() throws {
        let clients = ClientSockets()
        var processor = try makeProcessor("{local: true}", clients: clients)
        let loopback = IPAddress.loopbackIPv4
        clients.register(transport: .tcp, address: loopback, port: 41000, aid: "acme", now: 1000)
        var translated = try loopbackSYN(from: loopback, 41000, to: loopback, 9000)
        XCTAssertEqual(try maximumSegmentSize(&translated).0, 65495)
        XCTAssertEqual(process(&processor, &translated, outputInterface: 1).payloadLength, translated.count)
        XCTAssertEqual(try destinationPort(&translated), 20017)
        XCTAssertEqual(try maximumSegmentSize(&translated).0, 65491)
        XCTAssertEqual(try maximumSegmentSize(&translated).1, true)
        var plain = try loopbackSYN(from: loopback, 41002, to: loopback, 9000)
        XCTAssertEqual(process(&processor, &plain, outputInterface: 1), .acceptModified(length: plain.count))
        XCTAssertEqual(try destinationPort(&plain), 9000)
        XCTAssertEqual(try maximumSegmentSize(&plain).0, 65491)
        XCTAssertEqual(try maximumSegmentSize(&plain).1, true)
    }

    func testCooperativeSYNIsHeldOnceThenReleasedRewritten() throws {
        let clients = ClientSockets()
        var processor = try makeProcessor("{peers: [{network: 198.18.0.1, key: \(key)}]}", clients: clients)
        clients.register(transport: .tcp, address: client, port: 42000, aid: "acme", now: 1000)
        var packet = try syn(from: client, 42000, to: server, 9000)
        XCTAssertEqual(process(&processor, &packet, outputInterface: 2), .hold)
        var retransmission = try syn(from: client, 42000, to: server, 9000)
        XCTAssertEqual(process(&processor, &retransmission, outputInterface: 2), .drop, "no second negotiation")
        let negotiations = processor.takeNegotiations()
        XCTAssertEqual(negotiations.map(\.aid), ["acme"])
        XCTAssertTrue(processor.takeNegotiations().isEmpty)

        var sent: [(UInt32, Verdict, UInt16)] = []
        processor.complete(negotiations[0].key, virtualPort: 20500, peer: "198.18.0.1:9901", now: 1001) { queued, verdict in
            sent.append((queued.id, verdict, (try? IPPacket(queued.payload).destinationPort) ?? 0))
        }
        XCTAssertEqual(sent.count, 1)
        XCTAssertEqual(sent.first?.0, 7)
        XCTAssertEqual(sent.first?.2, 20500, "the held SYN leaves for the granted virtual port")
        XCTAssertFalse(processor.holdsConnections)
        let flow = try XCTUnwrap(processor.store.withLock { $0.snapshot() }.first)
        XCTAssertEqual(flow.mode, .cooperative)
        XCTAssertEqual(flow.peer, "198.18.0.1:9901")
    }

    func testRefusedNegotiationRefusesTheConnection() throws {
        let clients = ClientSockets()
        var processor = try makeProcessor("{peers: [{network: 198.18.0.1, key: \(key)}]}", clients: clients)
        clients.register(transport: .tcp, address: client, port: 42001, aid: "initech", now: 1000)
        var packet = try syn(from: client, 42001, to: server, 9000)
        XCTAssertEqual(process(&processor, &packet, outputInterface: 2), .hold)
        var verdicts: [Verdict] = []
        processor.complete(processor.takeNegotiations()[0].key, virtualPort: nil, peer: "198.18.0.1:9901", now: 1001) { _, verdict in
            verdicts.append(verdict)
        }
        XCTAssertEqual(verdicts, [Verdict(.accept, mark: RuleSet.refuseMark)])
        XCTAssertEqual(processor.counters[.negotiationRefused], 1)
    }
}
