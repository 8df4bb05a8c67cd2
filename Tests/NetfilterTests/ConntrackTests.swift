import Foundation
@testable import Netfilter
import NetworkLab
import TestSupport
import XCTest

// capget/capset(2): glibc exports them, no header declares them for Swift. They act on the
// calling thread only, which is what the permission test needs.
@_silgen_name("capget")
private func capget(_ header: UnsafeMutableRawPointer, _ data: UnsafeMutableRawPointer) -> Int32
@_silgen_name("capset")
private func capset(_ header: UnsafeMutableRawPointer, _ data: UnsafeMutableRawPointer) -> Int32

/// Clears CAP_NET_ADMIN (12) from the calling thread's effective set.
private func dropNetworkAdministrationOnThisThread() throws {
    var header: [UInt32] = [0x2008_0522, 0]  // _LINUX_CAPABILITY_VERSION_3, pid 0 = this thread
    var data = [UInt32](repeating: 0, count: 6)  // 2 x {effective, permitted, inheritable}
    guard capget(&header, &data) == 0 else { throw POSIXError(.init(rawValue: errno) ?? .EPERM) }
    data[0] &= ~(UInt32(1) << 12)
    guard capset(&header, &data) == 0 else { throw POSIXError(.init(rawValue: errno) ?? .EPERM) }
}

/// `Conntrack` against the real kernel: nft marks connections inside a namespace the test
/// makes, socat carries real TCP, the conntrack tool deletes an entry.
final class ConntrackTests: XCTestCase {
    static let tcpEstablished: UInt8 = 3  // TCP_CONNTRACK_ESTABLISHED
    static let marked: UInt32 = 0x5600_4E20
    static let client: [UInt8] = [198, 18, 0, 2]
    static let server: [UInt8] = [198, 18, 0, 1]
    static let loopback6: [UInt8] = Array(repeating: 0, count: 15) + [1]

    // MARK: - Against the kernel (root)

    /// One marked and one unmarked connection from the client host to the server host; the
    /// dump by mark returns the marked one only, with its tuples, state and counters, and
    /// deleting it with `conntrack -D` yields a destroy event for the same entry.
    func testMarkedConnectionIsDumpedAndItsDestroyIsReported() throws {
        try requirePrivileges()
        let lab = try NetworkLab(name: Privileged.labName("ct"))
        defer { lab.tearDown() }
        let directory = Privileged.scratchDirectory("ct")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }

        try lab.checked(lab.client, ["nft", "add", "table", "inet", "t"])
        try lab.checked(lab.client, ["nft", "add", "chain", "inet", "t", "o",
                                     "{ type filter hook output priority 0; }"])
        try lab.checked(lab.client, ["nft", "add", "rule", "inet", "t", "o",
                                     "tcp", "dport", "9000", "ct", "mark", "set", "0x56004e20"])
        try lab.checked(lab.client, ["sysctl", "-w", "net.netfilter.nf_conntrack_acct=1"])
        // Before the traffic: with nf_conntrack_events=2 (the default) an entry made while no
        // socket listened never reports its destroy.
        let conntrack = try openConntrack(in: lab, lab.client, events: [.destroy])

        // 10,000 bytes on each connection, which then stays open (idle) until torn down:
        // `ignoreeof` makes socat wait for more at the end of the file instead of closing.
        // (socat alone, not `(head; sleep) | socat`: a shell pipeline's `sleep` would outlive
        // the stop.)
        let size = 10_000
        let sent = "\(directory)/sent"
        try NetworkLab.makeRandomFile(sent, count: size)
        for port in [9000, 9001] {
            _ = try lab.spawn(lab.server, ["socat", "-u", "TCP-LISTEN:\(port),reuseaddr", "CREATE:\(directory)/received-\(port)"],
                              log: "\(directory)/server-\(port).log")
            try lab.waitForListener(lab.server, port: UInt16(port))
            _ = try lab.spawn(lab.client, ["socat", "-u", "FILE:\(sent),ignoreeof", "TCP:198.18.0.1:\(port)"],
                              log: "\(directory)/client-\(port).log")
            try NetworkLab.poll("\(size) bytes on port \(port)", timeout: 10) {
                ((try? FileManager.default.attributesOfItem(atPath: "\(directory)/received-\(port)")[.size] as? Int) ?? 0) >= size
            }
        }

        let all = try conntrack.dump(mark: 0, mask: 0)
        XCTAssertTrue(all.contains { $0.original.destinationPort == 9001 && $0.mark == 0 },
                      "the unmarked connection is in the table: \(all)")
        let entries = try conntrack.dump(mark: 0x5600_0000, mask: 0xFF00_0000)
        XCTAssertEqual(entries.count, 1, "only the marked connection: \(entries)")
        let entry = try XCTUnwrap(entries.first)
        XCTAssertEqual(entry.protocolNumber, 6)
        XCTAssertEqual(entry.mark, Self.marked)
        XCTAssertEqual(entry.original.source, Self.client)
        XCTAssertEqual(entry.original.destination, Self.server)
        XCTAssertEqual(entry.original.destinationPort, 9000)
        XCTAssertNotEqual(entry.original.sourcePort, 0)
        XCTAssertEqual(entry.reply, ConntrackTuple(source: Self.server, destination: Self.client,
                                                   sourcePort: 9000, destinationPort: entry.original.sourcePort))
        XCTAssertEqual(entry.tcpState, Self.tcpEstablished)
        XCTAssertTrue(entry.isAssured)
        XCTAssertGreaterThanOrEqual(entry.originalBytes, UInt64(size), "payload plus headers")
        XCTAssertGreaterThan(entry.originalPackets, 1)
        XCTAssertGreaterThan(entry.replyBytes, 0)
        XCTAssertGreaterThan(entry.replyPackets, 0)
        // The conntrack tool, an independent reader, sees the same entry.
        let listed = try lab.checked(lab.client, ["conntrack", "-L", "-p", "tcp", "--dport", "9000", "-o", "id"]).standardOutput
        XCTAssertTrue(listed.contains("sport=\(entry.original.sourcePort) dport=9000"), listed)
        XCTAssertTrue(listed.contains("mark=\(Self.marked)"), listed)
        XCTAssertTrue(listed.contains("id=\(entry.id)"), listed)
        XCTAssertEqual(try conntrack.dump(mark: 0x5700_0000, mask: 0xFF00_0000), [])

        // Nothing destroyed yet; then delete the entry and wait for its destroy event.
        var events: [ConntrackEvent] = []
        try conntrack.drainEvents { events.append($0) }
        XCTAssertEqual(events, [])
        try lab.checked(lab.client, ["conntrack", "-D", "-p", "tcp", "--dport", "9000"])
        let destroyed = try waitForEvent(conntrack) { event in
            if case .destroy(let gone) = event, gone.id == entry.id { return gone }
            return nil
        }
        XCTAssertEqual(destroyed.original, entry.original)
        XCTAssertEqual(destroyed.reply, entry.reply)
        XCTAssertEqual(destroyed.mark, Self.marked)
        XCTAssertEqual(destroyed.protocolNumber, 6)
        XCTAssertGreaterThanOrEqual(destroyed.originalBytes, entry.originalBytes, "final counters")
        XCTAssertEqual(try conntrack.dump(mark: 0x5600_0000, mask: 0xFF00_0000), [], "the entry is gone")
        XCTAssertEqual(conntrack.statistics.eventOverruns, 0)
    }

    /// IPv6 (over ::1) and UDP: new events with the mark the output hook set, and a dump
    /// that returns both families; a UDP entry has no TCP state.
    func testIPv6AndUDPEntriesWithNewEvents() throws {
        try requirePrivileges()
        let lab = try NetworkLab(name: Privileged.labName("ct6"))
        defer { lab.tearDown() }
        let directory = Privileged.scratchDirectory("ct6")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }

        try lab.checked(lab.client, ["nft", "add", "table", "inet", "t"])
        try lab.checked(lab.client, ["nft", "add", "chain", "inet", "t", "o",
                                     "{ type filter hook output priority 0; }"])
        try lab.checked(lab.client, ["nft", "add", "rule", "inet", "t", "o",
                                     "tcp", "dport", "9100", "ct", "mark", "set", "0x56000001"])
        try lab.checked(lab.client, ["nft", "add", "rule", "inet", "t", "o",
                                     "udp", "dport", "9101", "ct", "mark", "set", "0x56000002"])
        let conntrack = try openConntrack(in: lab, lab.client, events: [.new, .update, .destroy])

        _ = try lab.spawn(lab.client, ["socat", "-u", "TCP6-LISTEN:9100,bind=[::1],reuseaddr", "CREATE:\(directory)/tcp"],
                          log: "\(directory)/tcp-server.log")
        try lab.waitForListener(lab.client, port: 9100)
        try Data("hello\n".utf8).write(to: URL(fileURLWithPath: "\(directory)/hello"))
        _ = try lab.spawn(lab.client, ["socat", "-u", "FILE:\(directory)/hello,ignoreeof", "TCP6:[::1]:9100"],
                          log: "\(directory)/tcp-client.log")
        _ = try lab.spawn(lab.client, ["socat", "-u", "UDP4-RECV:9101,bind=198.18.0.2", "CREATE:\(directory)/udp"],
                          log: "\(directory)/udp-server.log")
        try NetworkLab.poll("the UDP receiver", timeout: 10) {
            let output = try? lab.run(lab.client, ["ss", "-Hlun", "sport = :9101"], timeout: 5)
            return !(output?.standardOutput.isEmpty ?? true)
        }
        try lab.checked(lab.client, ["sh", "-c", "echo datagram | socat -u STDIN UDP4-SENDTO:198.18.0.2:9101"])

        var news: [ConntrackEntry] = []
        try NetworkLab.poll("new events for both connections", timeout: 10) {
            _ = try? conntrack.waitForEvents(timeoutMilliseconds: 100)
            try? conntrack.drainEvents { event in
                if case .new(let entry) = event { news.append(entry) }
            }
            return news.contains { $0.protocolNumber == 6 } && news.contains { $0.protocolNumber == 17 }
        }
        let tcpNew = try XCTUnwrap(news.first { $0.protocolNumber == 6 })
        XCTAssertEqual(tcpNew.original.source, Self.loopback6)
        XCTAssertEqual(tcpNew.original.destinationPort, 9100)
        XCTAssertEqual(tcpNew.mark, 0x5600_0001, "the mark set in the output hook is in the new event")

        let entries = try conntrack.dump(mark: 0x5600_0000, mask: 0xFF00_0000)
        XCTAssertEqual(entries.count, 2, "\(entries)")
        let tcp = try XCTUnwrap(entries.first { $0.protocolNumber == 6 })
        XCTAssertEqual(tcp.id, tcpNew.id)
        XCTAssertEqual(tcp.original, tcpNew.original)
        XCTAssertEqual(tcp.original.destination, Self.loopback6)
        XCTAssertEqual(tcp.reply.source, Self.loopback6)
        XCTAssertEqual(tcp.reply.sourcePort, 9100)
        XCTAssertEqual(tcp.tcpState, Self.tcpEstablished)
        let udp = try XCTUnwrap(entries.first { $0.protocolNumber == 17 })
        XCTAssertEqual(udp.original.source, Self.client)
        XCTAssertEqual(udp.original.destination, Self.client)
        XCTAssertEqual(udp.original.destinationPort, 9101)
        XCTAssertEqual(udp.mark, 0x5600_0002)
        XCTAssertNil(udp.tcpState)
        XCTAssertEqual(try conntrack.dump(mark: 0x5600_0002, mask: 0xFFFF_FFFF).map(\.id), [udp.id])
    }

    /// A tiny event buffer and a burst of 200 entries (made with `conntrack -I`): the loss is
    /// reported as `.overrun`, reading goes on, and a dump still sees every entry.
    func testOverflowingTheEventSocketIsReportedAsOverrun() throws {
        try requirePrivileges()
        let lab = try NetworkLab(name: Privileged.labName("ctover"))
        defer { lab.tearDown() }
        // Without events there is no event socket: nothing to poll, waiting only sleeps.
        let dumpOnly = try openConntrack(in: lab, lab.client, events: [])
        XCTAssertEqual(dumpOnly.eventDescriptor, -1)
        let start = Date()
        XCTAssertFalse(try dumpOnly.waitForEvents(timeoutMilliseconds: 50))
        // A lower bound (load only makes it longer): it proves the call slept.
        XCTAssertGreaterThanOrEqual(Date().timeIntervalSince(start), 0.04)
        try dumpOnly.drainEvents { XCTFail("unexpected \($0)") }

        // The kernel raises the buffer to its minimum (a few KB): a handful of events fill it.
        let conntrack = try openConntrack(in: lab, lab.client, events: [.new], eventBufferSize: 1)
        let script = "for port in $(seq 1000 1199); do conntrack -I -p udp -s 198.18.1.1 -d 198.18.1.2 "
            + "--sport $port --dport 53 --mark 0x56000003 -t 60 >/dev/null 2>&1 || exit 1; done"
        try lab.checked(lab.client, ["sh", "-c", script])
        var news = 0, overruns = 0
        try conntrack.drainEvents { event in
            switch event {
            case .new: news += 1
            case .overrun: overruns += 1
            default: break
            }
        }
        XCTAssertGreaterThan(overruns, 0, "200 events cannot fit (\(news) arrived)")
        XCTAssertLessThan(news, 200)
        XCTAssertEqual(conntrack.statistics.eventOverruns, UInt64(overruns))
        XCTAssertEqual(try conntrack.dump(mark: 0x5600_0003, mask: 0xFFFF_FFFF).count, 200)
    }

    /// Without CAP_NET_ADMIN the errors say so: a thread drops the capability from its own
    /// effective set (capabilities are per thread) inside a namespace the test makes.
    func testWithoutNetworkAdministrationTheErrorSaysSo() throws {
        try requirePrivileges()
        let lab = try NetworkLab(name: Privileged.labName("cteperm"))
        defer { lab.tearDown() }
        final class Messages: @unchecked Sendable { var lines: [String] = [] }
        let messages = Messages()
        let finished = DispatchSemaphore(value: 0)
        let thread = Thread {
            defer { finished.signal() }
            do {
                try lab.enterOnCurrentThread(lab.client)
                try dropNetworkAdministrationOnThisThread()
                do {
                    _ = try Conntrack(events: [.destroy])
                    messages.lines.append("joined the event groups")
                } catch {
                    messages.lines.append("\(error)")
                }
                let conntrack = try Conntrack()
                do {
                    messages.lines.append("dumped \(try conntrack.dump(mark: 0, mask: 0).count)")
                } catch {
                    messages.lines.append("\(error)")
                }
            } catch {
                messages.lines.append("set-up failed: \(error)")
            }
        }
        thread.start()
        finished.wait()
        XCTAssertEqual(messages.lines, [
            "cannot subscribe to events of the conntrack table: permission denied (run as root or grant CAP_NET_ADMIN)",
            "cannot dump the conntrack table: permission denied (run as root or grant CAP_NET_ADMIN)",
        ])
    }

    // MARK: - Captured messages (no root)

    /// Messages captured from kernel 6.18 with a libmnl program: a dump answer for the
    /// marked connection of the test above (accounting on), and the new and destroy events
    /// of a connection that was refused (RST).
    func testCapturedDumpEntryParses() throws {
        let entry = try XCTUnwrap(Conntrack.entry(fromMessage: Captured.dumpedEntry))
        XCTAssertEqual(entry, ConntrackEntry(
            id: 0x29E0_E8D8, protocolNumber: 6,
            original: ConntrackTuple(source: Self.client, destination: Self.server, sourcePort: 52982, destinationPort: 9000),
            reply: ConntrackTuple(source: Self.server, destination: Self.client, sourcePort: 9000, destinationPort: 52982),
            mark: Self.marked, tcpState: Self.tcpEstablished,
            originalPackets: 5, originalBytes: 10268, replyPackets: 4, replyBytes: 216,
            isAssured: true, timeout: 431_998 /* ESTABLISHED: 5 days less 2 s */))
    }

    func testCapturedEventsParse() throws {
        let tuple = ConntrackTuple(source: Self.client, destination: Self.server, sourcePort: 52998, destinationPort: 9000)
        let reply = ConntrackTuple(source: Self.server, destination: Self.client, sourcePort: 9000, destinationPort: 52998)
        XCTAssertEqual(Conntrack.event(fromMessage: Captured.newEvent), .new(ConntrackEntry(
            id: 0x86FA_E0A2, protocolNumber: 6, original: tuple, reply: reply,
            mark: Self.marked, tcpState: 1 /* SYN_SENT */, timeout: 120)))
        XCTAssertEqual(Conntrack.event(fromMessage: Captured.destroyEvent), .destroy(ConntrackEntry(
            id: 0x86FA_E0A2, protocolNumber: 6, original: tuple, reply: reply,
            mark: Self.marked, tcpState: 8 /* CLOSE */,
            originalPackets: 1, originalBytes: 60, replyPackets: 1, replyBytes: 40, timeout: 120)))
    }

    func testDamagedMessagesAreRefused() {
        // Cut short: the netlink length no longer fits.
        XCTAssertNil(Conntrack.event(fromMessage: Array(Captured.destroyEvent.prefix(100))))
        XCTAssertNil(Conntrack.event(fromMessage: []))
        // Another nfnetlink subsystem (queue = 3) with the same body.
        var otherSubsystem = Captured.newEvent
        otherSubsystem[5] = 3
        XCTAssertNil(Conntrack.event(fromMessage: otherSubsystem))
        // CTA_TUPLE_ORIG claims 240 bytes: its nested attributes run into the next ones.
        // (libnetfilter_conntrack's nfct_nlmsg_parse calls exit(1) on this message.)
        var overlong = Captured.dumpedEntry
        overlong[20] = 0xF0
        XCTAssertNil(Conntrack.entry(fromMessage: overlong))
        // CTA_TUPLE_ORIG runs past the end of the message.
        var pastTheEnd = Captured.dumpedEntry
        pastTheEnd[20] = 0xFF
        XCTAssertNil(Conntrack.entry(fromMessage: pastTheEnd))
        // CTA_MARK (at 132) with a 2-byte payload instead of 4.
        var shortMark = Captured.dumpedEntry
        XCTAssertEqual(Array(shortMark[132..<136]), [0x08, 0x00, 0x08, 0x00])
        shortMark[132] = 0x06
        XCTAssertNil(Conntrack.entry(fromMessage: shortMark))
        // An unknown attribute type is skipped: CTA_MARK renumbered to 200.
        var unknown = Captured.dumpedEntry
        unknown[134] = 200
        XCTAssertEqual(Conntrack.entry(fromMessage: unknown)?.mark, 0)
    }

    func testErrorsSayWhatToDo() {
        XCTAssertEqual(
            "\(NetfilterError(conntrack: .dumpConntrack, errno: .notPermitted))",
            "cannot dump the conntrack table: permission denied (run as root or grant CAP_NET_ADMIN)")
        XCTAssertEqual(
            "\(NetfilterError(conntrack: .joinConntrackEvents, errno: .notPermitted))",
            "cannot subscribe to events of the conntrack table: permission denied (run as root or grant CAP_NET_ADMIN)")
        XCTAssertEqual(
            "\(NetfilterError(conntrack: .openConntrack, errno: .protocolNotSupported))",
            "cannot open the conntrack table: this kernel has no conntrack netlink support (try `modprobe nf_conntrack_netlink`)")
        XCTAssertEqual(
            "\(NetfilterError(conntrack: .dumpConntrack, errno: .timedOut))",
            "cannot dump the conntrack table: the kernel did not answer (conntrack dump (IPCTNL_MSG_CT_GET) timed out)")
        XCTAssertEqual(
            "\(NetfilterError(conntrack: .readConntrackEvents, errno: .badFileDescriptor))",
            "cannot read events of the conntrack table: recv (conntrack events) failed: Bad file descriptor (errno 9)")
        // The queue errors keep their wording.
        XCTAssertEqual("\(NetfilterError(.bindQueue, queue: 3, errno: .resourceBusy))",
                       "cannot bind queue 3: another process owns it (is vpm already running?)")
    }

    func testMarkMatching() {
        let tuple = ConntrackTuple(source: Self.client, destination: Self.server, sourcePort: 1, destinationPort: 2)
        let entry = ConntrackEntry(id: 1, protocolNumber: 6, original: tuple, reply: tuple, mark: Self.marked)
        XCTAssertTrue(entry.matches(mark: 0x5600_0000, mask: 0xFF00_0000))
        XCTAssertTrue(entry.matches(mark: 0x56FF_FFFF, mask: 0xFF00_0000), "bits outside the mask do not count")
        XCTAssertFalse(entry.matches(mark: 0x5700_0000, mask: 0xFF00_0000))
        XCTAssertTrue(entry.matches(mark: 0, mask: 0), "mask 0 matches everything")
    }

    // MARK: - Helpers

    enum Captured {
    static let dumpedEntry: [UInt8] = [
        0x0c, 0x01, 0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x01, 0x00, 0x00, 0x00, 0x1c, 0x63, 0xc7, 0xc5,
        0x02, 0x00, 0x00, 0x00, 0x34, 0x00, 0x01, 0x80, 0x14, 0x00, 0x01, 0x80, 0x08, 0x00, 0x01, 0x00,
        0xc6, 0x12, 0x00, 0x02, 0x08, 0x00, 0x02, 0x00, 0xc6, 0x12, 0x00, 0x01, 0x1c, 0x00, 0x02, 0x80,
        0x05, 0x00, 0x01, 0x00, 0x06, 0x00, 0x00, 0x00, 0x06, 0x00, 0x02, 0x00, 0xce, 0xf6, 0x00, 0x00,
        0x06, 0x00, 0x03, 0x00, 0x23, 0x28, 0x00, 0x00, 0x34, 0x00, 0x02, 0x80, 0x14, 0x00, 0x01, 0x80,
        0x08, 0x00, 0x01, 0x00, 0xc6, 0x12, 0x00, 0x01, 0x08, 0x00, 0x02, 0x00, 0xc6, 0x12, 0x00, 0x02,
        0x1c, 0x00, 0x02, 0x80, 0x05, 0x00, 0x01, 0x00, 0x06, 0x00, 0x00, 0x00, 0x06, 0x00, 0x02, 0x00,
        0x23, 0x28, 0x00, 0x00, 0x06, 0x00, 0x03, 0x00, 0xce, 0xf6, 0x00, 0x00, 0x08, 0x00, 0x03, 0x00,
        0x00, 0x00, 0x00, 0x0e, 0x08, 0x00, 0x08, 0x00, 0x56, 0x00, 0x4e, 0x20, 0x08, 0x00, 0x0c, 0x00,
        0x29, 0xe0, 0xe8, 0xd8, 0x08, 0x00, 0x0b, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00, 0x07, 0x00,
        0x00, 0x06, 0x97, 0x7e, 0x30, 0x00, 0x04, 0x80, 0x2c, 0x00, 0x01, 0x80, 0x05, 0x00, 0x01, 0x00,
        0x03, 0x00, 0x00, 0x00, 0x05, 0x00, 0x02, 0x00, 0x0a, 0x00, 0x00, 0x00, 0x05, 0x00, 0x03, 0x00,
        0x0a, 0x00, 0x00, 0x00, 0x06, 0x00, 0x04, 0x00, 0x23, 0x00, 0x00, 0x00, 0x06, 0x00, 0x05, 0x00,
        0x23, 0x00, 0x00, 0x00, 0x1c, 0x00, 0x09, 0x80, 0x0c, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x05, 0x0c, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x28, 0x1c,
        0x1c, 0x00, 0x0a, 0x80, 0x0c, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04,
        0x0c, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xd8,
    ]
    static let newEvent: [UInt8] = [
        0xcc, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x06, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x02, 0x00, 0x00, 0x00, 0x34, 0x00, 0x01, 0x80, 0x14, 0x00, 0x01, 0x80, 0x08, 0x00, 0x01, 0x00,
        0xc6, 0x12, 0x00, 0x02, 0x08, 0x00, 0x02, 0x00, 0xc6, 0x12, 0x00, 0x01, 0x1c, 0x00, 0x02, 0x80,
        0x05, 0x00, 0x01, 0x00, 0x06, 0x00, 0x00, 0x00, 0x06, 0x00, 0x02, 0x00, 0xcf, 0x06, 0x00, 0x00,
        0x06, 0x00, 0x03, 0x00, 0x23, 0x28, 0x00, 0x00, 0x34, 0x00, 0x02, 0x80, 0x14, 0x00, 0x01, 0x80,
        0x08, 0x00, 0x01, 0x00, 0xc6, 0x12, 0x00, 0x01, 0x08, 0x00, 0x02, 0x00, 0xc6, 0x12, 0x00, 0x02,
        0x1c, 0x00, 0x02, 0x80, 0x05, 0x00, 0x01, 0x00, 0x06, 0x00, 0x00, 0x00, 0x06, 0x00, 0x02, 0x00,
        0x23, 0x28, 0x00, 0x00, 0x06, 0x00, 0x03, 0x00, 0xcf, 0x06, 0x00, 0x00, 0x08, 0x00, 0x0c, 0x00,
        0x86, 0xfa, 0xe0, 0xa2, 0x08, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x08, 0x08, 0x00, 0x07, 0x00,
        0x00, 0x00, 0x00, 0x78, 0x30, 0x00, 0x04, 0x80, 0x2c, 0x00, 0x01, 0x80, 0x05, 0x00, 0x01, 0x00,
        0x01, 0x00, 0x00, 0x00, 0x05, 0x00, 0x02, 0x00, 0x0a, 0x00, 0x00, 0x00, 0x05, 0x00, 0x03, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x06, 0x00, 0x04, 0x00, 0x03, 0x00, 0x00, 0x00, 0x06, 0x00, 0x05, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x08, 0x00, 0x08, 0x00, 0x56, 0x00, 0x4e, 0x20,
    ]
    static let destroyEvent: [UInt8] = [
        0xe4, 0x00, 0x00, 0x00, 0x02, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x02, 0x00, 0x00, 0x00, 0x34, 0x00, 0x01, 0x80, 0x14, 0x00, 0x01, 0x80, 0x08, 0x00, 0x01, 0x00,
        0xc6, 0x12, 0x00, 0x02, 0x08, 0x00, 0x02, 0x00, 0xc6, 0x12, 0x00, 0x01, 0x1c, 0x00, 0x02, 0x80,
        0x05, 0x00, 0x01, 0x00, 0x06, 0x00, 0x00, 0x00, 0x06, 0x00, 0x02, 0x00, 0xcf, 0x06, 0x00, 0x00,
        0x06, 0x00, 0x03, 0x00, 0x23, 0x28, 0x00, 0x00, 0x34, 0x00, 0x02, 0x80, 0x14, 0x00, 0x01, 0x80,
        0x08, 0x00, 0x01, 0x00, 0xc6, 0x12, 0x00, 0x01, 0x08, 0x00, 0x02, 0x00, 0xc6, 0x12, 0x00, 0x02,
        0x1c, 0x00, 0x02, 0x80, 0x05, 0x00, 0x01, 0x00, 0x06, 0x00, 0x00, 0x00, 0x06, 0x00, 0x02, 0x00,
        0x23, 0x28, 0x00, 0x00, 0x06, 0x00, 0x03, 0x00, 0xcf, 0x06, 0x00, 0x00, 0x08, 0x00, 0x0c, 0x00,
        0x86, 0xfa, 0xe0, 0xa2, 0x08, 0x00, 0x03, 0x00, 0x00, 0x00, 0x02, 0x08, 0x08, 0x00, 0x07, 0x00,
        0x00, 0x00, 0x00, 0x78, 0x1c, 0x00, 0x09, 0x80, 0x0c, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x01, 0x0c, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x3c,
        0x1c, 0x00, 0x0a, 0x80, 0x0c, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
        0x0c, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x28, 0x10, 0x00, 0x04, 0x80,
        0x0c, 0x00, 0x01, 0x80, 0x05, 0x00, 0x01, 0x00, 0x08, 0x00, 0x00, 0x00, 0x08, 0x00, 0x08, 0x00,
        0x56, 0x00, 0x4e, 0x20,
    ]
    }

    private func requirePrivileges() throws {
        try Privileged.requireRoot()
        for tool in ["nft", "conntrack", "sysctl"] where !Command.exists(tool) {
            XCTFail("\(tool) is missing (Debian packages nftables, conntrack, procps)")
            throw XCTSkip("no \(tool)")
        }
    }

    /// Opens the sockets on a thread that entered `host`'s namespace: they stay bound to that
    /// namespace, whichever thread uses them afterwards.
    private func openConntrack(
        in lab: NetworkLab, _ host: NetworkLab.Host, events: Set<ConntrackEventKind>,
        eventBufferSize: Int = Conntrack.defaultEventBufferSize
    ) throws -> Conntrack {
        final class Outcome: @unchecked Sendable { var result: Result<Conntrack, any Error>? }
        let outcome = Outcome()
        let finished = DispatchSemaphore(value: 0)
        let thread = Thread {
            defer { finished.signal() }
            outcome.result = Result { () throws -> Conntrack in
                try lab.enterOnCurrentThread(host)
                return try Conntrack(events: events, eventBufferSize: eventBufferSize)
            }
        }
        thread.start()
        finished.wait()
        return try XCTUnwrap(outcome.result).get()
    }

    /// Waits (up to 10 s) for an event `match` picks, draining everything on the way.
    private func waitForEvent<T>(
        _ conntrack: Conntrack, _ match: (ConntrackEvent) -> T?
    ) throws -> T {
        var found: T?
        var seen: [ConntrackEvent] = []
        let deadline = Date().addingTimeInterval(10)
        while found == nil, Date() < deadline {
            guard try conntrack.waitForEvents(timeoutMilliseconds: 100) else { continue }
            try conntrack.drainEvents { event in
                seen.append(event)
                if found == nil { found = match(event) }
            }
        }
        return try XCTUnwrap(found, "no matching event within 10 s; saw \(seen)")
    }
}
