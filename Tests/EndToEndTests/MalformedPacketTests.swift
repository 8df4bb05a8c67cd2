import Control
import Foundation
import NetworkLab
import TestSupport
import XCTest

/// Malformed and odd packets from a raw socket at the initial port, from an AID's client:
/// the engine keeps running, rewrites nothing it cannot parse, counts what it drops by
/// reason, and carries the next real connection whole (sha256).
final class MalformedPacketTests: XCTestCase {
    static let sender = #"""
        import socket, struct, sys

        def checksum(data):
            if len(data) % 2: data += b"\0"
            total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
            while total >> 16: total = (total & 0xFFFF) + (total >> 16)
            return ~total & 0xFFFF

        def ip(src, dst, payload, proto=6, options=b"", flags_frag=0x4000, total=None, ident=1):
            ihl = 5 + len(options) // 4
            length = total if total is not None else ihl * 4 + len(payload)
            header = struct.pack("!BBHHHBBH4s4s", (4 << 4) | ihl, 0, length, ident, flags_frag, 64, proto, 0,
                                 socket.inet_aton(src), socket.inet_aton(dst)) + options
            header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
            return header + payload

        def tcp(src, dst, sport, dport, flags=0x02, doff=5, payload=b""):
            header = struct.pack("!HHIIBBHHH", sport, dport, 1000, 0, doff << 4, flags, 8192, 0, 0)
            pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, len(header) + len(payload))
            csum = checksum(pseudo + header + payload)
            return header[:16] + struct.pack("!H", csum) + header[18:] + payload

        src, dst, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        packets = {
            "options": ip(src, dst, tcp(src, dst, 41001, port), options=b"\x01\x01\x01\x00"),
            "doff-too-large": ip(src, dst, tcp(src, dst, 41002, port, doff=15)),
            "doff-too-small": ip(src, dst, tcp(src, dst, 41003, port, doff=3)),
            "truncated-tcp": ip(src, dst, tcp(src, dst, 41004, port)[:10]),
            "lone-fragment": ip(src, dst, tcp(src, dst, 41005, port, payload=b"x" * 64), flags_frag=0x2000, ident=77),
            "ack-without-flow": ip(src, dst, tcp(src, dst, 41006, port, flags=0x10)),
            "bad-checksum": ip(src, dst, tcp(src, dst, 41007, port)[:16] + b"\xde\xad" + tcp(src, dst, 41007, port)[18:]),
        }
        for name in (sys.argv[4:] or packets):
            for _ in range(3):
                s.sendto(packets[name], (dst, 0))
            print(name)
        """#

    /// Each kind is sent three times. What reaches the engine depends on the datapath: the
    /// kernel datapath sees only what conntrack accepts as a new connection (a bad
    /// checksum, a bad data offset, a truncated header or an ACK without a connection are
    /// INVALID there, a lone fragment waits for its rest in defragmentation), so of these
    /// only the SYN with IPv4 options gets a decision, taken in the kernel from the engine's
    /// maps (it is never queued); the userspace datapath sees all but the fragment and
    /// decides each.
    func testTheEngineSurvivesMalformedPacketsAndCountsThem() throws {
        try Privileged.withAcmeEngine("malformed") { lab, engine, directory in
            try Self.sender.write(toFile: "\(directory)/malformed.py", atomically: true, encoding: .utf8)
            let sent = try lab.checked(lab.clients[0], ["python3", "\(directory)/malformed.py", lab.clients[0].address, lab.server.address, "9000"])
            XCTAssertEqual(sent.standardOutput.split(separator: "\n").count, 7, sent.standardOutput)
            var statistics = EngineStatistics()
            try NetworkLab.poll("the engine to count the packets", timeout: 5) {
                let answer = try? engine.stats(json: true).standardOutput
                statistics = answer.flatMap { try? JSONDecoder().decode(EngineStatistics.self, from: Data($0.utf8)) } ?? statistics
                // The kernel datapath decides the SYN with options in the kernel, from the
                // engine's maps; the userspace datapath queues everything.
                return Privileged.decidesInKernel ? statistics.flowsDecidedInKernel >= 1
                    : statistics.packetsQueued >= 3 && statistics.connectionsDecided >= 1
            }
            Thread.sleep(forTimeInterval: 0.5)  // the rest of the counts (published every 200 ms)
            statistics = try JSONDecoder().decode(EngineStatistics.self, from: Data(try engine.stats(json: true).standardOutput.utf8))
            let flows = try JSONDecoder().decode([FlowRecord].self, from: Data(try engine.flows(json: true).standardOutput.utf8))
            let byPort = Dictionary(flows.map { ($0.clientPort, $0) }, uniquingKeysWith: { first, _ in first })

            // A SYN with IPv4 options is a SYN: admitted to acme's instance, which answered.
            // (The socket datapath lists a connection from its socket; a handshake the client
            // resets never becomes one, so only the program's count shows it was steered.)
            if Privileged.datapath != "socket" {
                XCTAssertEqual(byPort[41001]?.aid, "acme", "\(flows)")
                XCTAssertGreaterThan(byPort[41001]?.packetsToClient ?? 0, 0, "the instance answered the SYN with options")
            }
            // Nothing malformed, refused or fragmentary got a flow; a bad checksum, if it got one
            // (userspace: the engine does not verify it; the rewrite keeps it bad), was never
            // answered: the server's kernel dropped it.
            for port in 41002...41006 { XCTAssertNil(byPort[UInt16(port)], "client port \(port): \(flows)") }
            XCTAssertEqual(byPort[41007]?.packetsToClient ?? 0, 0)
            switch Privileged.datapath {
            case "userspace":
                XCTAssertEqual(statistics.reasons["malformed"], 9, "bad data offsets and the truncated header: \(statistics.reasons)")
                XCTAssertEqual(statistics.reasons["notConnectionStart"], 3, "\(statistics.reasons)")
                XCTAssertEqual(statistics.dropped, 9)
                XCTAssertEqual(statistics.refused, 3)
            case "socket":
                XCTAssertEqual(statistics.packetsQueued, 0, "the program steers the SYN with options itself")
                // The program answers every segment no socket owns: each SYN with options and
                // each stray ACK (acme's listener resets it, as any listener would).
                XCTAssertTrue((1...6).contains(statistics.flowsDecidedInKernel), "\(statistics.flowsDecidedInKernel)")
                XCTAssertEqual(statistics.flowsRefusedInKernel, 0)
                XCTAssertEqual(statistics.reasons, [:])
            default:
                XCTAssertEqual(statistics.packetsQueued, 0, "the kernel decides the SYN with options itself")
                // Each of the three SYNs with options is a decision when the one before was
                // reset already (the client's kernel has no socket for the SYN-ACK): conntrack
                // then makes a new entry for it. The counter counts decisions, the table flows.
                XCTAssertTrue((1...3).contains(statistics.flowsDecidedInKernel), "the SYN with options, at most once per send: \(statistics.flowsDecidedInKernel)")
                XCTAssertEqual(statistics.reasons, [:])
            }
            // Still running, and a real connection goes through whole.
            try Privileged.uploadToAcme(lab, directory: directory, megabytes: 2)
        }
    }
}
