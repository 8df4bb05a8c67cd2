import Decision
import Control
@testable import Engine
import FlowTable
import Netfilter
import Packet
import Policy
import XCTest

/// The per-packet decisions with byte fixtures: packets built with the Packet module's
/// emitter, handed to the processor as the kernel would hand them, checked byte by byte.
final class PacketPipelineTests: XCTestCase {
    static let configuration = """
        virtual-ports: 20000-20999
        ports: [9000, 5353/udp]
        applications:
          acme:
            instances: {9000: 20017}
          globex:
            instances: {9000: 20018}
        sources:
          - {from: 198.18.1.0/24, aid: acme}
          - {from: 198.18.3.7, aid: globex}
          - {from: "2001:db8::/32", aid: globex}
        """

    var processor: PacketPipeline!
    let server = IPAddress(198, 18, 0, 1)
    let acmeClient = IPAddress(198, 18, 1, 2)

    override func setUpWithError() throws {
        let configuration = try Configuration.parse(Self.configuration)
        let store = SharedFlowTable(FlowTable(capacity: 16))
        processor = PacketPipeline(configuration: configuration, store: store)
    }

    /// A packet as the kernel queues it: `hook` 0 = PREROUTING, 3 = OUTPUT.
    struct Queued {
        var bytes: [UInt8]
        var hook: UInt8
        var info: PacketInfo = []
        var originalLength: Int?
    }

    func packet(
        from source: IPAddress, _ sourcePort: UInt16, to destination: IPAddress, _ destinationPort: UInt16,
        flags: TCPFlags = [.ack], transport: TransportProtocol = .tcp, payload: [UInt8] = Array("hello".utf8), hook: UInt8 = 0
    ) throws -> Queued {
        let representation = PacketRepresentation(
            sourceAddress: source, destinationAddress: destination, transportProtocol: transport,
            sourcePort: sourcePort, destinationPort: destinationPort, sequenceNumber: 1000, acknowledgmentNumber: 2000,
            tcpFlags: transport == .tcp ? flags : [], windowSize: 512)
        var bytes = [UInt8](repeating: 0, count: representation.emittedLength(payloadLength: payload.count))
        try bytes.withUnsafeMutableBytes { buffer in
            try payload.withUnsafeBytes { _ = try representation.emit(into: buffer, payload: $0) }
        }
        return Queued(bytes: bytes, hook: hook)
    }

    /// Runs the processor on `queued` (rewriting its bytes in place, as in the kernel buffer).
    func process(_ queued: inout Queued, now: UInt64 = 1_000) -> Verdict {
        let hook = queued.hook, info = queued.info, original = queued.originalLength
        return queued.bytes.withUnsafeMutableBytes { buffer in
            processor.process(QueuedPacket(id: 1, hardwareProtocol: 0x0800, hook: hook, mark: nil, payload: buffer,
                                           originalLength: original ?? buffer.count, info: info), now: now)
        }
    }

    func parsed(_ queued: inout Queued) throws -> (source: UInt16, destination: UInt16, checksumValid: Bool) {
        try queued.bytes.withUnsafeMutableBytes { buffer in
            let packet = try IPPacket(buffer)
            return (packet.sourcePort, packet.destinationPort, packet.transportChecksumIsValid())
        }
    }

    func testConnectionFromAcmeIsTranslatedBothWays() throws {
        var syn = try packet(from: acmeClient, 40000, to: server, 9000, flags: [.syn], payload: [])
        XCTAssertEqual(process(&syn), .acceptModified(length: syn.bytes.count))
        var fields = try parsed(&syn)
        XCTAssertEqual(fields.destination, 20017)
        XCTAssertEqual(fields.source, 40000)
        XCTAssertTrue(fields.checksumValid)

        var reply = try packet(from: server, 20017, to: acmeClient, 40000, flags: [.syn, .ack], payload: [], hook: 3)
        XCTAssertEqual(process(&reply), .acceptModified(length: reply.bytes.count))
        fields = try parsed(&reply)
        XCTAssertEqual(fields.source, 9000)
        XCTAssertEqual(fields.destination, 40000)
        XCTAssertTrue(fields.checksumValid)

        var data = try packet(from: acmeClient, 40000, to: server, 9000)
        XCTAssertEqual(process(&data), .acceptModified(length: data.bytes.count))
        XCTAssertEqual(try parsed(&data).destination, 20017)

        let flows = processor.store.withLock { $0.snapshot() }
        XCTAssertEqual(flows.count, 1)
        XCTAssertEqual(flows.first?.aid, "acme")
        XCTAssertEqual(flows.first?.virtualPort, 20017)
        XCTAssertEqual(flows.first?.state, .established)
        XCTAssertEqual(flows.first?.counters.packetsToServer, 2)
        XCTAssertEqual(flows.first?.counters.packetsToClient, 1)
        XCTAssertEqual(processor.counters.rewritten, 3)
        XCTAssertEqual(processor.counters.checksumIncremental, 3)
    }

    func testOnlyThePortsAndChecksumChange() throws {
        var syn = try packet(from: acmeClient, 40000, to: server, 9000, flags: [.syn])
        let before = syn.bytes
        _ = process(&syn)
        let changed = zip(before, syn.bytes).enumerated().filter { $0.element.0 != $0.element.1 }.map(\.offset)
        // IPv4 header 20 bytes: destination port at 22-23, TCP checksum at 36-37.
        XCTAssertTrue(Set(changed).isSubset(of: [22, 23, 36, 37]), "changed bytes \(changed)")
    }

    func testPartialChecksumIsRecomputed() throws {
        var syn = try packet(from: acmeClient, 40001, to: server, 9000, flags: [.syn], payload: Array(repeating: 7, count: 100))
        // What the kernel leaves with CHECKSUM_PARTIAL: the folded pseudo-header sum.
        syn.bytes.withUnsafeMutableBytes { buffer in
            let packet = try! IPPacket(buffer)
            let partial = packet.pseudoHeaderSum
            buffer[36] = UInt8(partial >> 8)
            buffer[37] = UInt8(partial & 0xFF)
        }
        syn.info = [.checksumNotReady]
        XCTAssertEqual(process(&syn), .acceptModified(length: syn.bytes.count))
        XCTAssertTrue(try parsed(&syn).checksumValid)
        XCTAssertEqual(processor.counters.checksumRecomputed, 1)
    }

    func testIPv6ClientReachesItsInstance() throws {
        let client = try XCTUnwrap(IPAddress("2001:db8::7")), host = try XCTUnwrap(IPAddress("2001:db8::1"))
        var syn = try packet(from: client, 50000, to: host, 9000, flags: [.syn])
        XCTAssertEqual(process(&syn), .acceptModified(length: syn.bytes.count))
        let fields = try parsed(&syn)
        XCTAssertEqual(fields.destination, 20018)
        XCTAssertTrue(fields.checksumValid)
    }

    func testClientWithoutApplicationIsRefusedWithTheMark() throws {
        var syn = try packet(from: IPAddress(198, 18, 9, 9), 40000, to: server, 9000, flags: [.syn])
        let before = syn.bytes
        XCTAssertEqual(process(&syn), Verdict(.accept, mark: RuleSet.refuseMark))
        XCTAssertEqual(syn.bytes, before, "a refused packet is not rewritten")
        XCTAssertEqual(processor.counters.refused, 1)
        XCTAssertEqual(processor.counters[.noApplication], 1)
        XCTAssertEqual(processor.lastRefusal?.client, IPAddress(198, 18, 9, 9))
        XCTAssertEqual(processor.store.withLock { $0.count }, 0)
    }

    func testApplicationWithoutInstanceOnThePortIsRefused() throws {
        var datagram = try packet(from: acmeClient, 5000, to: server, 5353, transport: .udp)
        XCTAssertEqual(process(&datagram), Verdict(.accept, mark: RuleSet.refuseMark))
        XCTAssertEqual(processor.counters[.noInstance], 1)
    }

    func testMidStreamPacketWithoutFlowIsRefused() throws {
        var data = try packet(from: acmeClient, 40000, to: server, 9000, flags: [.ack])
        XCTAssertEqual(process(&data), Verdict(.accept, mark: RuleSet.refuseMark))
        XCTAssertEqual(processor.counters[.notConnectionStart], 1)
    }

    func testReplyWithoutFlowIsDropped() throws {
        var reply = try packet(from: server, 20017, to: acmeClient, 40000, hook: 3)
        XCTAssertEqual(process(&reply), .drop)
        XCTAssertEqual(processor.counters[.noFlow], 1)
        var stray = try packet(from: server, 20500, to: acmeClient, 40000, hook: 3)
        XCTAssertEqual(process(&stray), .drop)
        XCTAssertEqual(processor.counters[.unknownVirtualPort], 1)
    }

    func testOtherPortsPassUnchanged() throws {
        var other = try packet(from: acmeClient, 40000, to: server, 22, flags: [.syn])
        let before = other.bytes
        XCTAssertEqual(process(&other), .accept)
        XCTAssertEqual(other.bytes, before)
        XCTAssertEqual(processor.counters.acceptedUnchanged, 1)
    }

    func testTruncatedAndMalformedPacketsAreDroppedUntouched() throws {
        var syn = try packet(from: acmeClient, 40000, to: server, 9000, flags: [.syn])
        syn.originalLength = syn.bytes.count + 100
        let before = syn.bytes
        XCTAssertEqual(process(&syn), .drop)
        XCTAssertEqual(syn.bytes, before)
        XCTAssertEqual(processor.counters[.truncated], 1)

        var bad = try packet(from: acmeClient, 40000, to: server, 9000, flags: [.syn])
        bad.bytes[0] = 0x43  // IHL 3: shorter than an IPv4 header
        XCTAssertEqual(process(&bad), .drop)
        XCTAssertEqual(processor.counters[.malformed], 1)
        XCTAssertEqual(processor.store.withLock { $0.count }, 0)
    }
}
