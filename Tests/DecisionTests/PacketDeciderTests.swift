import Decision
import FlowTable
import Packet
import Policy
import XCTest

/// The decision layer alone, with byte fixtures: no netfilter, no root, no datapath. What
/// a datapath does with each decision is tested in EngineTests.PacketPipelineTests.
final class PacketDeciderTests: XCTestCase {
    static let configuration = """
        virtual-ports: 20000-20999
        ports: [9000, 5353/udp]
        applications:
          acme: {instances: {9000: 20017}}
          globex: {instances: {9000: 20018}}
          initech: {}
        sources:
          - {from: 198.18.1.0/24, aid: acme}
          - {from: 198.18.3.7, aid: globex}
          - {from: 198.18.4.0/24, aid: initech}
        cooperative:
          local: true
          peers:
            - {network: 198.18.8.0/24, key: "\(String(repeating: "ab", count: 32))"}
        """

    let server = IPAddress(198, 18, 0, 1)
    let acmeClient = IPAddress(198, 18, 1, 2)
    var decider: PacketDecider!
    let clients = ClientSockets()

    override func setUpWithError() throws {
        decider = PacketDecider(configuration: try Configuration.parse(Self.configuration),
                                store: SharedFlowTable(FlowTable(capacity: 16)), clients: clients)
    }

    func bytes(from source: IPAddress, _ sourcePort: UInt16, to destination: IPAddress, _ destinationPort: UInt16,
               flags: TCPFlags = [.ack], transport: TransportProtocol = .tcp) throws -> [UInt8] {
        let representation = PacketRepresentation(
            sourceAddress: source, destinationAddress: destination, transportProtocol: transport,
            sourcePort: sourcePort, destinationPort: destinationPort, sequenceNumber: 1, acknowledgmentNumber: 2,
            tcpFlags: transport == .tcp ? flags : [], windowSize: 512)
        let payload = Array("hi".utf8)
        var bytes = [UInt8](repeating: 0, count: representation.emittedLength(payloadLength: payload.count))
        try bytes.withUnsafeMutableBytes { buffer in
            try payload.withUnsafeBytes { _ = try representation.emit(into: buffer, payload: $0) }
        }
        return bytes
    }

    func decide(_ bytes: [UInt8], _ hook: PacketInput.Hook, truncated: Bool = false, id: UInt32 = 1) -> Decision {
        var copy = bytes
        let decision = copy.withUnsafeMutableBytes { buffer in
            decider.decide(PacketInput(id: id, hook: hook, payload: buffer, isTruncated: truncated, checksum: .complete), now: 1000)
        }
        XCTAssertEqual(copy, bytes, "deciding never changes the packet")
        return decision
    }

    func testSourceRoutedConnectionBothWays() throws {
        let syn = try bytes(from: acmeClient, 40000, to: server, 9000, flags: [.syn])
        XCTAssertEqual(decide(syn, .arriving), .toVirtualPort(Decided(mode: .source, aidSlot: 1, virtualPort: 20017)))
        XCTAssertEqual(decide(try bytes(from: acmeClient, 40000, to: server, 9000), .arriving),
                       .toVirtualPort(Decided(mode: .source, aidSlot: 1, virtualPort: 20017)))
        let reply = try bytes(from: server, 20017, to: acmeClient, 40000, flags: [.syn, .ack])
        XCTAssertEqual(decide(reply, .leaving(viaLoopback: false)), .toInitialPort(9000))
        let flow = try XCTUnwrap(decider.store.withLock { $0.snapshot() }.first)
        XCTAssertEqual(flow.aid, "acme")
        XCTAssertEqual(flow.counters.packetsToServer, 2)
        XCTAssertEqual(flow.counters.packetsToClient, 1)
    }

    /// A draining instance (listener closed, accepted connections running): its flows keep
    /// their translation both ways; a new connection of its AID finds no instance.
    func testADrainingInstancesFlowsKeepTheirTranslationAndNewOnesAreRefused() throws {
        let syn = try bytes(from: acmeClient, 40000, to: server, 9000, flags: [.syn])
        XCTAssertEqual(decide(syn, .arriving), .toVirtualPort(Decided(mode: .source, aidSlot: 1, virtualPort: 20017)))
        let configuration = try Configuration.parse(Self.configuration)
        let draining = configuration.instances.map { instance in
            Instance(aid: instance.aid, initialPort: instance.initialPort, virtualPort: instance.virtualPort,
                     accepting: instance.aid != "acme")
        }
        decider.updateRoutes(draining, generation: 2)
        XCTAssertEqual(decide(try bytes(from: acmeClient, 40000, to: server, 9000), .arriving),
                       .toVirtualPort(Decided(mode: .source, aidSlot: 1, virtualPort: 20017)))
        XCTAssertEqual(decide(try bytes(from: server, 20017, to: acmeClient, 40000), .leaving(viaLoopback: false)), .toInitialPort(9000))
        XCTAssertEqual(decide(try bytes(from: acmeClient, 40001, to: server, 9000, flags: [.syn]), .arriving), .refuse)
        XCTAssertEqual(decider.counters[.noInstance], 1)
        // globex still serves.
        let globex = try bytes(from: IPAddress(198, 18, 3, 7), 40000, to: server, 9000, flags: [.syn])
        XCTAssertEqual(decide(globex, .arriving), .toVirtualPort(Decided(mode: .source, aidSlot: 2, virtualPort: 20018)))
    }

    func testRefusalsSayWhy() throws {
        let stranger = try bytes(from: IPAddress(198, 18, 9, 9), 40000, to: server, 9000, flags: [.syn])
        XCTAssertEqual(decide(stranger, .arriving), .refuse)
        XCTAssertEqual(decider.counters[.noApplication], 1)
        XCTAssertEqual(decider.lastRefusal?.reason, .noApplication)
        let noInstance = try bytes(from: IPAddress(198, 18, 4, 2), 40000, to: server, 9000, flags: [.syn])
        XCTAssertEqual(decide(noInstance, .arriving), .refuse)
        XCTAssertEqual(decider.counters[.noInstance], 1)
        let midstream = try bytes(from: acmeClient, 40001, to: server, 9000)
        XCTAssertEqual(decide(midstream, .arriving), .refuse)
        XCTAssertEqual(decider.counters[.notConnectionStart], 1)
        XCTAssertEqual(decider.counters.refused, 3)
    }

    func testDropsSayWhy() throws {
        let orphanReply = try bytes(from: server, 20017, to: acmeClient, 40000)
        XCTAssertEqual(decide(orphanReply, .leaving(viaLoopback: false)), .drop)
        XCTAssertEqual(decider.counters[.noFlow], 1)
        // A local program talking to the virtual port directly is not the decision's business.
        XCTAssertEqual(decide(orphanReply, .leaving(viaLoopback: true)), .accept)
        let syn = try bytes(from: acmeClient, 40000, to: server, 9000, flags: [.syn])
        XCTAssertEqual(decide(syn, .arriving, truncated: true), .drop)
        XCTAssertEqual(decider.counters[.truncated], 1)
        XCTAssertEqual(decide(syn, .other), .drop)
        XCTAssertEqual(decider.counters[.wrongHook], 1)
        XCTAssertEqual(decide(Array(syn.prefix(10)), .arriving), .drop)
        XCTAssertEqual(decider.counters[.malformed] + decider.counters[.truncated], 2)
    }

    func testAPeerMayUseAVirtualPortOnlyForANegotiatedFlow() throws {
        let peerClient = IPAddress(198, 18, 8, 2)
        XCTAssertEqual(decide(try bytes(from: peerClient, 40000, to: server, 20017, flags: [.syn]), .arriving), .drop)
        XCTAssertEqual(decider.counters[.notNegotiated], 1)
        let key = FlowKey(transport: .tcp, client: peerClient, clientPort: 40001, server: server, initialPort: 9000)
        XCTAssertTrue(decider.store.record(key, virtualPort: 20017, aid: "acme", mode: .cooperative, peer: "198.18.8.2", now: 1000))
        XCTAssertEqual(decide(try bytes(from: peerClient, 40001, to: server, 20017, flags: [.syn]), .arriving),
                       .admit(Decided(mode: .cooperative, aidSlot: 1, virtualPort: 20017)))
    }

    func testCooperativeClientIsHeldThenTranslated() throws {
        let local = IPAddress(198, 18, 0, 1), remote = IPAddress(198, 18, 8, 1)
        clients.register(transport: .tcp, address: local, port: 41000, aid: "globex", now: 1000)
        XCTAssertEqual(decide(try bytes(from: local, 41000, to: remote, 9000, flags: [.syn]), .leaving(viaLoopback: false)), .hold)
        let negotiations = decider.takeNegotiations()
        XCTAssertEqual(negotiations.map(\.aid), ["globex"])
        var sent: [Decision] = []
        decider.complete(negotiations[0].key, virtualPort: 20018, peer: "198.18.8.1", now: 1000) { id, _, _, decision in
            XCTAssertEqual(id, 1)
            sent.append(decision)
        }
        XCTAssertEqual(sent, [.toVirtualPort(Decided(mode: .cooperative, aidSlot: 2, virtualPort: 20018))])
    }

    /// UDP datagrams a program sends while its flow is negotiated are held behind the first
    /// and follow it in order (at most `followerLimit`); a TCP SYN sent again is dropped.
    func testLaterDatagramsWaitForTheNegotiationAndFollowTheFirst() throws {
        let local = IPAddress(198, 18, 0, 1), remote = IPAddress(198, 18, 8, 1)
        clients.register(transport: .udp, address: local, port: 41000, aid: "acme", now: 1000)
        let datagram = try bytes(from: local, 41000, to: remote, 5353, transport: .udp)
        for id in 1...UInt32(PacketDecider.followerLimit + 2) {
            XCTAssertEqual(decide(datagram, .leaving(viaLoopback: false), id: id), id <= PacketDecider.followerLimit + 1 ? .hold : .drop)
        }
        XCTAssertEqual(decider.counters[.retransmittedWhileNegotiating], 1)
        let negotiations = decider.takeNegotiations()
        XCTAssertEqual(negotiations.count, 1, "one negotiation for the flow")
        var sent: [(UInt32, Decision)] = []
        decider.complete(negotiations[0].key, virtualPort: 20117, peer: "198.18.8.1", now: 1000) { id, _, _, decision in
            sent.append((id, decision))
        }
        XCTAssertEqual(sent.map(\.0), Array(1...UInt32(PacketDecider.followerLimit + 1)), "in the order they came")
        XCTAssertTrue(sent.allSatisfy { $0.1 == .toVirtualPort(Decided(mode: .cooperative, aidSlot: 1, virtualPort: 20117)) })
        let flow = try XCTUnwrap(decider.store.withLock { $0.snapshot() }.first)
        XCTAssertEqual(flow.counters.packetsToServer, UInt64(PacketDecider.followerLimit + 1))
        XCTAssertFalse(decider.holdsConnections)

        // Refused: the first gets the refusal (an ICMP error), the rest are dropped.
        clients.register(transport: .udp, address: local, port: 41001, aid: "acme", now: 1000)
        let other = try bytes(from: local, 41001, to: remote, 5353, transport: .udp)
        XCTAssertEqual(decide(other, .leaving(viaLoopback: false), id: 100), .hold)
        XCTAssertEqual(decide(other, .leaving(viaLoopback: false), id: 101), .hold)
        var refused: [(UInt32, Decision)] = []
        decider.complete(decider.takeNegotiations()[0].key, virtualPort: nil, peer: "198.18.8.1", now: 1000) { id, _, _, decision in
            refused.append((id, decision))
        }
        XCTAssertEqual(refused.map(\.0), [100, 101])
        XCTAssertEqual(refused.map(\.1), [.refuse, .drop])

        // TCP: a SYN sent again while negotiating is dropped (TCP retransmits it later).
        clients.register(transport: .tcp, address: local, port: 41002, aid: "acme", now: 1000)
        let syn = try bytes(from: local, 41002, to: remote, 9000, flags: [.syn])
        XCTAssertEqual(decide(syn, .leaving(viaLoopback: false), id: 200), .hold)
        XCTAssertEqual(decide(syn, .leaving(viaLoopback: false), id: 201), .drop)
        XCTAssertEqual(decider.counters[.retransmittedWhileNegotiating], 2)
    }

    func testLocalClientReachesTheInstanceOfItsOwnAID() throws {
        let loopback = IPAddress.loopbackIPv4
        clients.register(transport: .tcp, address: loopback, port: 41000, aid: "acme", now: 1000)
        XCTAssertEqual(decide(try bytes(from: loopback, 41000, to: loopback, 9000, flags: [.syn]), .leaving(viaLoopback: true)),
                       .toVirtualPort(Decided(mode: .local, aidSlot: 1, virtualPort: 20017)))
        // Without a registration (a program not under vpm exec) the connection is not vpm's.
        XCTAssertEqual(decide(try bytes(from: loopback, 41001, to: loopback, 9000, flags: [.syn]), .leaving(viaLoopback: true)),
                       .accept)
    }
}

final class DropReasonTests: XCTestCase {
    /// JSON keys are the identifiers; the sentences are for people and may change.
    func testIdentifiersAreStableAndRoundTrip() {
        XCTAssertEqual(DropReason.noApplication.identifier, "noApplication")
        XCTAssertEqual(DropReason.negotiationRefused.identifier, "negotiationRefused")
        for reason in DropReason.allCases {
            XCTAssertEqual(DropReason(identifier: reason.identifier), reason)
        }
        XCTAssertEqual(Set(DropReason.allCases.map(\.identifier)).count, DropReason.allCases.count)
        XCTAssertNil(DropReason(identifier: "no AID matches the client"))
    }
}

final class LatencyHistogramTests: XCTestCase {
    /// A value on a bound belongs to that bound's bucket (Prometheus' `le`); above the last
    /// bound, to the last bucket; counts and sums add.
    func testBucketsCountAndSum() {
        var histogram = LatencyHistogram()
        histogram.record(microseconds: 0)
        histogram.record(microseconds: 25)
        histogram.record(microseconds: 26)
        histogram.record(microseconds: 9_000_000)
        XCTAssertEqual(histogram.buckets[0], 2)
        XCTAssertEqual(histogram.buckets[1], 1)
        XCTAssertEqual(histogram.buckets.last, 1)
        XCTAssertEqual(histogram.buckets.count, LatencyHistogram.boundsMicroseconds.count + 1)
        XCTAssertEqual(histogram.count, 4)
        XCTAssertEqual(histogram.sumMicroseconds, 9_000_051)
        let twice = histogram.adding(histogram)
        XCTAssertEqual(twice.count, 8)
        XCTAssertEqual(twice.buckets[0], 4)
        XCTAssertEqual(twice.sumMicroseconds, 18_000_102)
    }
}
