import Decision
@testable import Engine
import FlowTable
import Netfilter
import Packet
import Policy
import XCTest

/// The kernel datapath without a kernel: the mark layout, the rules and nft script it
/// installs, and the processor's decisions, which leave the packet's bytes alone and say
/// everything in the mark.
final class KernelDatapathTests: XCTestCase {
    static let configuration = """
        virtual-ports: 20000-20999
        ports: [9000, 5353/udp]
        applications:
          acme: {instances: {9000: 20017}}
          globex: {instances: {9000: 20018}}
        sources:
          - {from: 198.18.1.0/24, aid: acme}
          - {from: 198.18.3.7, aid: globex}
        """
    let server = IPAddress(198, 18, 0, 1)

    func testMarkLayout() {
        let mark = KernelMark(mode: .cooperative, slot: 3, virtualPort: 20017)
        XCTAssertEqual(mark.value, 0x5000_0000 | 2 << 26 | 3 << 16 | 20017)
        XCTAssertEqual(KernelMark(mark.value), mark)
        for mode in FlowMode.allCases {
            for slot in [0, 1, 1023] {
                let value = KernelMark(mode: mode, slot: slot, virtualPort: 65535).value
                XCTAssertEqual(KernelMark(value), KernelMark(mode: mode, slot: slot, virtualPort: 65535))
                XCTAssertEqual(value & KernelMark.mapKeyMask, KernelMark.mapKey(65535), "the map key ignores mode and slot")
            }
        }
        XCTAssertNil(KernelMark(RuleSet.refuseMark), "the refuse mark is not a decision")
        XCTAssertNil(KernelMark(0))
        XCTAssertEqual(KernelMark(mode: .source, slot: 5000, virtualPort: 1).slot, 0, "a slot past 10 bits is unknown")
        // Through a service address: mode 3, the host's slot in place of the AID's.
        let service = KernelMark(Decided(mode: .cooperative, aidSlot: 2, virtualPort: 22000, hostSlot: 7))
        XCTAssertEqual(service.value, 0x5000_0000 | 3 << 26 | 7 << 16 | 22000)
        XCTAssertEqual(service.value & KernelMark.serviceMask, KernelMark.serviceTag)
        XCTAssertEqual(service.value & KernelMark.hostKeyMask, KernelMark.hostKey(7))
        XCTAssertEqual(service.value & KernelMark.mapKeyMask, KernelMark.mapKey(22000))
        XCTAssertEqual(KernelMark(service.value), KernelMark(mode: .cooperative, slot: 0, virtualPort: 22000, hostSlot: 7))
        for mode in FlowMode.allCases {
            XCTAssertNotEqual(KernelMark(mode: mode, slot: 1023, virtualPort: 1).value & KernelMark.serviceMask, KernelMark.serviceTag,
                              "no other decision takes the service rule")
        }
    }

    func testRulesQueueOnlyConnectionStartsAfterConntrack() throws {
        let rules = RuleSet.firstPacket(try Configuration.parse("queues: 1\n" + Self.configuration))
        let ipv4 = rules.installCommands().filter { $0.first == "iptables" }.map { $0.dropFirst(2).joined(separator: " ") }
        let undecided = "-m mark ! --mark 0x50000000/0xf0000000 -m mark ! --mark 0x76706d01"
        XCTAssertEqual(ipv4, [
            // A NAT chain: the kernel runs it for a connection's first packet only.
            "-t nat -N VPM-PREROUTING",
            "-t nat -A VPM-PREROUTING ! -i lo -p tcp --dport 9000 --syn -m conntrack --ctstate NEW \(undecided) -j NFQUEUE --queue-num 0",
            "-t nat -A VPM-PREROUTING ! -i lo -p udp --dport 5353 -m conntrack --ctstate NEW \(undecided) -j NFQUEUE --queue-num 0",
            "-t nat -I PREROUTING 1 -j VPM-PREROUTING",
        ])
        XCTAssertFalse(ipv4.contains { $0.contains("notrack") }, "conntrack must see the kernel datapath's flows")
    }

    /// Fleet service addresses: a local connection no AID decided (still bound for the
    /// service address after NAT) is refused at once, in a filter chain made only for them.
    func testServiceAddressesGetAFilterChainOnlyWithAFleet() throws {
        for (network, service, family) in [("198.18.0.0/16", "198.18.0.100", "ip"), ("\"2001:db8::/64\"", "2001:db8::100", "ip6")] {
            let fleet = Self.configuration + """

                fleet:
                  etcd: [http://198.18.9.1:2379]
                  network: \(network)
                  virtual-ports: 20000-29999
                  service: \(service)
                """
            let lines = KernelNAT(try Configuration.parse(fleet)).script.split(separator: "\n").map(String.init)
            XCTAssertTrue(lines.contains("add rule inet vpm services \(family) daddr { \(service) } meta l4proto tcp th dport { 9000 } reject with tcp reset"), "\(lines)")
            XCTAssertTrue(lines.contains("add rule inet vpm services \(family) daddr { \(service) } meta l4proto udp th dport { 5353 } reject"), "\(lines)")
            XCTAssertFalse(lines.contains("delete chain inet vpm services"))
        }
    }

    func testNFTScriptTranslatesByMarkAndGuardsTheVirtualPorts() throws {
        let script = KernelNAT(try Configuration.parse(Self.configuration)).script
        let lines = script.split(separator: "\n").map(String.init)
        XCTAssertTrue(lines.contains("add rule inet vpm prerouting meta mark & 0xf0000000 == 0x50000000 meta mark & 0xfc000000 != 0x5c000000 meta l4proto tcp th dport { 9000 } dnat ip to ip daddr : meta mark & 0xf000ffff map @vport"), script)
        XCTAssertTrue(lines.contains("add rule inet vpm output meta mark & 0xf0000000 == 0x50000000 ct mark set meta mark"), script)
        XCTAssertTrue(lines.contains("add rule inet vpm input iifname != \"lo\" meta l4proto udp th dport 20000-20999 ct mark & 0xf0000000 != 0x50000000 drop"), script)
        XCTAssertTrue(lines.contains("add rule inet vpm input iifname != \"lo\" meta l4proto tcp th dport { 9000 } ct status ! dnat drop"), script)
        let input = lines.filter { $0.hasPrefix("add rule inet vpm input") }
        XCTAssertEqual(input.first, "add rule inet vpm input meta mark 0x76706d01 meta l4proto tcp reject with tcp reset",
                       "refusals before the guards")
        XCTAssertEqual(lines.filter { $0.hasPrefix("add chain") }.filter { !$0.contains("type nat hook") }, [
            "add chain inet vpm lookup",
            "add chain inet vpm services { type filter hook output priority 0; policy accept; }",
        ], "NAT chains, and the kernel's own decisions")
        XCTAssertEqual(lines.last, "delete chain inet vpm services", "no filter chain without fleet service addresses: \(script)")
        XCTAssertTrue(lines.contains("add chain inet vpm first { type nat hook prerouting priority -110; policy accept; }"), script)
        XCTAssertEqual(lines.filter { $0.hasPrefix("add rule inet vpm first") },
                       ["add rule inet vpm first ct state new meta mark & 0xf0000000 != 0x50000000 meta mark != 0x76706d01 jump lookup"],
                       "the lookups, before the iptables nat chain that queues (priority -100), not again on the REPEAT after a verdict")
        XCTAssertTrue(lines.contains("add rule inet vpm lookup iifname != \"lo\" ct mark & 0xf0000000 != 0x50000000 meta l4proto tcp tcp flags & (fin | syn | rst | ack) == syn meta mark set meta l4proto . ip saddr . th sport . th dport map @endpoints4 ct mark set meta mark ct event set 0x0 counter name decided return"), script)
        XCTAssertTrue(lines.contains("add map inet vpm networks6 { type inet_proto . ipv6_addr . inet_service : mark; flags interval; }"), script)
        XCTAssertTrue(lines.contains("flush map inet vpm networks6"), "a restarted engine fills the maps afresh: \(script)")
        XCTAssertFalse(lines.contains { $0.hasPrefix("add rule inet vpm output meta mark 0x76706d01") }, "no local refusals without local or peers")
        let local = KernelNAT(try Configuration.parse(Self.configuration + "\ncooperative: {local: true}\n")).script
        XCTAssertTrue(local.contains("add rule inet vpm output meta mark 0x76706d01 meta l4proto tcp reject with tcp reset"), local)
        let elements = lines.filter { $0.hasPrefix("add element") }.joined()
        XCTAssertTrue(elements.contains("0x50004e20 : 20000"))
        XCTAssertTrue(elements.contains("0x500051e7 : 20967"))
        XCTAssertEqual(elements.components(separatedBy: " : ").count - 1, 1000, "one element per virtual port")
        XCTAssertEqual(lines.filter { $0.hasPrefix("delete") }, ["delete chain inet vpm services"],
                       "refreshing must never delete a NAT chain: NAT would stop for running connections (services is a filter chain)")
    }

    func makeProcessor(_ text: String = KernelDatapathTests.configuration, clients: ClientSockets = ClientSockets()) throws -> PacketPipeline {
        PacketPipeline(configuration: try Configuration.parse(text), store: SharedFlowTable(FlowTable(capacity: 8)),
                        clients: clients, datapath: .kernel)
    }

    func process(_ processor: inout PacketPipeline, _ bytes: inout [UInt8], hook: UInt8, outputInterface: UInt32 = 2) -> Verdict {
        bytes.withUnsafeMutableBytes { buffer in
            processor.process(QueuedPacket(id: 9, hardwareProtocol: 0x0800, hook: hook, mark: nil, payload: buffer,
                                           originalLength: buffer.count, info: [], outputInterface: outputInterface), now: 1000)
        }
    }

    func testSourceRoutedSYNLeavesUnchangedWithItsDecision() throws {
        var processor = try makeProcessor()
        var packet = try syn(from: IPAddress(198, 18, 3, 7), 40000, to: server, 9000)
        let original = packet
        let verdict = process(&processor, &packet, hook: 0)
        XCTAssertEqual(verdict, Verdict(.repeat, mark: KernelMark(mode: .source, slot: 2, virtualPort: 20018).value))
        XCTAssertEqual(packet, original, "no byte changes: kernel NAT translates")
        XCTAssertEqual(processor.counters.marked, 1)
        XCTAssertEqual(processor.counters.rewritten, 0)
        let flow = try XCTUnwrap(processor.store.withLock { $0.snapshot() }.first)
        XCTAssertEqual(flow.aid, "globex")
        XCTAssertEqual(flow.virtualPort, 20018)

        var again = try syn(from: IPAddress(198, 18, 3, 7), 40000, to: server, 9000)
        XCTAssertEqual(process(&processor, &again, hook: 0), verdict, "a retransmitted SYN gets the same decision")

        var unknown = try syn(from: IPAddress(198, 18, 9, 9), 40001, to: server, 9000)
        XCTAssertEqual(process(&processor, &unknown, hook: 0), Verdict(.repeat, mark: RuleSet.refuseMark))
    }

    func testLocalAndCooperativeDecisionsAreMarks() throws {
        let clients = ClientSockets()
        let key = String(repeating: "ab", count: 32)
        var processor = try makeProcessor(Self.configuration + "\ncooperative: {local: true, peers: [{network: 198.18.7.1, key: \(key)}]}\n",
                                          clients: clients)
        clients.register(transport: .tcp, address: .loopbackIPv4, port: 41000, aid: "acme", now: 1000)
        var local = try syn(from: .loopbackIPv4, 41000, to: .loopbackIPv4, 9000)
        XCTAssertEqual(process(&processor, &local, hook: 3, outputInterface: 1),
                       Verdict(.repeat, mark: KernelMark(mode: .local, slot: 1, virtualPort: 20017).value))
        // A local program of no AID is not vpm's: plain ACCEPT, with no mark the queue rule
        // would let by (REPEAT without one would queue it again, forever).
        var stranger = try syn(from: .loopbackIPv4, 41001, to: .loopbackIPv4, 9000)
        XCTAssertEqual(process(&processor, &stranger, hook: 3, outputInterface: 1), .accept)

        // Our client's SYN to a peer: held, negotiated, released unchanged with the peer's port.
        let client = IPAddress(198, 18, 0, 2), peer = IPAddress(198, 18, 7, 1)
        clients.register(transport: .tcp, address: client, port: 42000, aid: "globex", now: 1000)
        var held = try syn(from: client, 42000, to: peer, 9000)
        XCTAssertEqual(process(&processor, &held, hook: 3), .hold)
        var sent: [(Verdict, UInt16)] = []
        processor.complete(processor.takeNegotiations()[0].key, virtualPort: 20500, peer: "198.18.7.1:9901", now: 1001) { queued, verdict in
            sent.append((verdict, (try? IPPacket(queued.payload).destinationPort) ?? 0))
        }
        XCTAssertEqual(sent.first?.0, Verdict(.repeat, mark: KernelMark(mode: .cooperative, slot: 2, virtualPort: 20500).value))
        XCTAssertEqual(sent.first?.1, 9000, "the SYN itself is not rewritten")

        // The peer's client arriving on our virtual port: admitted with a mark only when negotiated.
        var direct = try syn(from: peer, 43000, to: server, 20017)
        XCTAssertEqual(process(&processor, &direct, hook: 0), .drop)
        _ = processor.store.withLock { table in
            table.insert(FlowKey(transport: .tcp, client: peer, clientPort: 43001, server: server, initialPort: 9000),
                         virtualPort: 20017, aid: "acme", mode: .cooperative, peer: "198.18.7.1", now: 1000)
        }
        var negotiated = try syn(from: peer, 43001, to: server, 20017)
        XCTAssertEqual(process(&processor, &negotiated, hook: 0),
                       Verdict(.repeat, mark: KernelMark(mode: .cooperative, slot: 1, virtualPort: 20017).value))
    }
}

/// Conntrack entries (as the kernel reports them) in the flow table's terms.
final class ConntrackSyncTests: XCTestCase {
    let configuration = try! Configuration.parse(KernelDatapathTests.configuration + """

        cooperative: {peers: [{network: 198.18.7.0/24, key: \(String(repeating: "ab", count: 32))}]}
        """)

    func entry(from client: [UInt8], _ clientPort: UInt16, to server: [UInt8], _ port: UInt16, replyPort: UInt16,
               mark: UInt32, state: UInt8? = 3) -> ConntrackEntry {
        ConntrackEntry(id: 1, protocolNumber: state == nil ? 17 : 6,
                       original: ConntrackTuple(source: client, destination: server, sourcePort: clientPort, destinationPort: port),
                       reply: ConntrackTuple(source: server, destination: client, sourcePort: replyPort, destinationPort: clientPort),
                       mark: mark, tcpState: state, originalPackets: 10, originalBytes: 1000, replyPackets: 8, replyBytes: 9000,
                       isAssured: true)
    }

    /// A dump of 2,500 entries (three slices) applied as it is read: the flow it names is
    /// observed, entries the table lacks are left out when the table would have expired them
    /// (idle 10 s by conntrack's clock, against a table whose established flows last 5 s) and
    /// added when rebuilding; a flow the dump lacks is removed once past the grace period and
    /// kept within it.
    func testReconcileAppliesADumpAsItIsRead() throws {
        let store = SharedFlowTable(FlowTable(capacity: 4096, timeouts: FlowTimeouts(established: 5_000)))
        let server = IPAddress(198, 18, 0, 1), client = IPAddress(198, 18, 1, 2)
        func key(_ port: UInt16) -> FlowKey { FlowKey(transport: .tcp, client: client, clientPort: port, server: server, initialPort: 9000) }
        let now: UInt64 = 10_000
        store.withLock { table in
            _ = table.insert(key(40000), virtualPort: 20017, aid: "acme", mode: .source, peer: nil, now: 1_000)
            _ = table.insert(key(50000), virtualPort: 20017, aid: "acme", mode: .source, peer: nil, now: 1_000)  // gone, old
            _ = table.insert(key(50001), virtualPort: 20017, aid: "acme", mode: .source, peer: nil, now: now - 1_000)  // gone, young
        }
        let mark = KernelMark(mode: .source, slot: 1, virtualPort: 20017).value
        let entries = (0..<2_500).map { index in
            var entry = entry(from: [198, 18, 1, 2], UInt16(40000 + index), to: [198, 18, 0, 1], 9000, replyPort: 20017, mark: mark)
            entry.timeout = 431_990  // 10 s idle
            return entry
        }
        var handed = 0
        let dump: ((ConntrackEntry) -> Void) throws(NetfilterError) -> Void = { take in
            for entry in entries { handed += 1; take(entry) }
        }
        let first = try ConntrackSync.reconcile(store: store, configuration: configuration, instances: configuration.instances,
                                                now: now, adding: .decidedInKernel(.standard), dump)
        XCTAssertEqual(handed, 2_500)
        XCTAssertEqual(first.added, 0)
        XCTAssertEqual(first.removed, 1)
        let flows = store.snapshot()
        XCTAssertEqual(Set(flows.map(\.key.clientPort)), [40000, 50001])
        let observed = try XCTUnwrap(flows.first { $0.key.clientPort == 40000 })
        XCTAssertEqual(observed.state, .established)
        XCTAssertEqual(observed.counters.bytesToClient, 9000)

        let rebuilt = try ConntrackSync.reconcile(store: store, configuration: configuration, instances: configuration.instances,
                                                  now: now, adding: .everything, dump)
        XCTAssertEqual(rebuilt.added, 2_499)
        XCTAssertEqual(rebuilt.removed, 0, "the young flow is kept within the grace period")
        XCTAssertEqual(store.withLock { $0.count }, 2_501)
    }

    /// A regular dump adds what the kernel decided by itself (source-routed, its last packet
    /// within the table's timeout for its state by conntrack's clock), not a flow the table
    /// expired while conntrack keeps it longer, nor another mode's.
    func testADumpAddsWhatTheKernelDecidedAndNotWhatTheTableExpired() throws {
        let mark = KernelMark(mode: .source, slot: 1, virtualPort: 20017).value
        let timeouts = ConntrackTimeouts.standard
        var open = entry(from: [198, 18, 1, 2], 40000, to: [198, 18, 0, 1], 9000, replyPort: 20017, mark: mark, state: 3)
        open.timeout = 431_990
        var closedNow = entry(from: [198, 18, 1, 2], 40001, to: [198, 18, 0, 1], 9000, replyPort: 20017, mark: mark, state: 7)
        closedNow.timeout = 118  // TIME_WAIT for 2 s: within the table's 10 s
        var closedLong = closedNow
        closedLong.original.sourcePort = 40002
        closedLong.timeout = 60  // TIME_WAIT for a minute: the table expired it
        var unknown = closedNow
        unknown.original.sourcePort = 40003
        unknown.timeout = nil
        XCTAssertEqual(timeouts.idle(open), 10_000)
        XCTAssertEqual(timeouts.idle(closedLong), 60_000)
        XCTAssertNil(timeouts.idle(unknown))
        let store = SharedFlowTable(FlowTable(capacity: 64))
        let added = try ConntrackSync.reconcile(store: store, configuration: configuration, instances: configuration.instances,
                                                now: 10_000, adding: .decidedInKernel(timeouts)) { (take) throws(NetfilterError) in
            for entry in [open, closedNow, closedLong, unknown] { take(entry) }
        }
        XCTAssertEqual(added.added, 3)
        XCTAssertEqual(Set(store.snapshot().map(\.key.clientPort)), [40000, 40001, 40003])
        // The engine's own decisions of other modes are in the table from their first packet.
        let cooperative = try XCTUnwrap(ConntrackSync.flow(
            entry(from: [198, 18, 7, 2], 41000, to: [198, 18, 0, 1], 20017, replyPort: 20017,
                  mark: KernelMark(mode: .cooperative, slot: 1, virtualPort: 20017).value),
            configuration: configuration, instances: configuration.instances))
        XCTAssertFalse(ConntrackSync.adds(cooperative, idle: 0, .decidedInKernel(timeouts), timeouts: FlowTimeouts.standard))
    }

    func testConntrackTimeoutsAreReadFromTheNamespacesSysctls() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("vpm-ct-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try "30\n".write(to: directory.appendingPathComponent("nf_conntrack_tcp_timeout_time_wait"), atomically: true, encoding: .utf8)
        try "nonsense\n".write(to: directory.appendingPathComponent("nf_conntrack_udp_timeout"), atomically: true, encoding: .utf8)
        let read = ConntrackTimeouts.read(directory: directory.path)
        XCTAssertEqual(read.tcp[7], 30)
        XCTAssertEqual(read.udp, 30, "unreadable: the kernel's default")
        XCTAssertEqual(read.tcp[3], 432_000)
    }

    func testTranslatedSourceRoutedEntry() throws {
        let mark = KernelMark(mode: .source, slot: 1, virtualPort: 20017).value
        let flow = try XCTUnwrap(ConntrackSync.flow(entry(from: [198, 18, 1, 2], 40000, to: [198, 18, 0, 1], 9000, replyPort: 20017, mark: mark),
                                                    configuration: configuration, instances: configuration.instances))
        XCTAssertEqual(flow.key, FlowKey(transport: .tcp, client: IPAddress(198, 18, 1, 2), clientPort: 40000,
                                         server: IPAddress(198, 18, 0, 1), initialPort: 9000))
        XCTAssertEqual(flow.virtualPort, 20017)
        XCTAssertEqual(flow.aid, "acme")
        XCTAssertEqual(flow.mode, .source)
        XCTAssertNil(flow.peer)
        XCTAssertEqual(flow.state, .established)
        XCTAssertEqual(flow.counters, FlowCounters(packetsToServer: 10, bytesToServer: 1000, packetsToClient: 8, bytesToClient: 9000))
    }

    func testCooperativeEntriesOnBothSides() throws {
        // Server side: the peer's client arrived on our virtual port, untranslated.
        let server = KernelMark(mode: .cooperative, slot: 2, virtualPort: 20018).value
        let admitted = try XCTUnwrap(ConntrackSync.flow(entry(from: [198, 18, 7, 5], 41000, to: [198, 18, 0, 1], 20018, replyPort: 20018, mark: server),
                                                        configuration: configuration, instances: configuration.instances))
        XCTAssertEqual(admitted.key.initialPort, 9000, "the initial port comes from the instance on the virtual port")
        XCTAssertEqual(admitted.aid, "globex")
        XCTAssertEqual(admitted.peer, "198.18.7.5")
        // Client side: our program's connection to the peer; only the mark knows the AID.
        let client = KernelMark(mode: .cooperative, slot: 1, virtualPort: 20500).value
        let ours = try XCTUnwrap(ConntrackSync.flow(entry(from: [198, 18, 0, 1], 42000, to: [198, 18, 7, 1], 9000, replyPort: 20500, mark: client),
                                                    configuration: configuration, instances: configuration.instances))
        XCTAssertEqual(ours.aid, "acme")
        XCTAssertEqual(ours.virtualPort, 20500)
        XCTAssertEqual(ours.peer, "198.18.7.1:9901")
    }

    /// The instance on a virtual port names its AID, even when `applications:` was reordered
    /// since the mark was made (the slot then points at another AID).
    func testInstanceNamesTheAIDBeforeTheSlot() throws {
        let stale = KernelMark(mode: .source, slot: 2, virtualPort: 20017).value  // slot 2 is globex now
        let flow = try XCTUnwrap(ConntrackSync.flow(entry(from: [198, 18, 1, 2], 40000, to: [198, 18, 0, 1], 9000, replyPort: 20017, mark: stale),
                                                    configuration: configuration, instances: configuration.instances))
        XCTAssertEqual(flow.aid, "acme")
    }

    func testStatesAndForeignEntries() {
        let mark = KernelMark(mode: .source, slot: 1, virtualPort: 20017).value
        let states: [UInt8: FlowState] = [1: .opening, 2: .opening, 3: .established, 4: .closing, 5: .closing, 6: .closing,
                                          7: .closed, 8: .closed]
        for (tcp, state) in states {
            let flow = ConntrackSync.flow(entry(from: [198, 18, 1, 2], 40000, to: [198, 18, 0, 1], 9000, replyPort: 20017, mark: mark, state: tcp),
                                          configuration: configuration, instances: configuration.instances)
            XCTAssertEqual(flow?.state, state, "TCP_CONNTRACK \(tcp)")
        }
        let udp = ConntrackSync.flow(entry(from: [198, 18, 1, 2], 40000, to: [198, 18, 0, 1], 5353, replyPort: 20117, mark: mark, state: nil),
                                     configuration: configuration, instances: configuration.instances)
        XCTAssertEqual(udp?.state, .udpStream)
        XCTAssertNil(ConntrackSync.flow(entry(from: [198, 18, 1, 2], 1, to: [198, 18, 0, 1], 22, replyPort: 22, mark: 0),
                                        configuration: configuration, instances: configuration.instances), "not vpm's")
    }
}
