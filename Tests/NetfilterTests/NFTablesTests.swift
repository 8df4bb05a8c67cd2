import Foundation
@testable import Netfilter
import NetworkLab
import SystemPackage
import TestSupport
import XCTest

/// `NFTables.counter` reads a named counter over netlink: the kernel's answer parsed from a
/// captured fixture, and the whole request against the real kernel in a namespace.
final class NFTablesTests: XCTestCase {
    /// The kernel's NFT_MSG_NEWOBJ answer to NFT_MSG_GETOBJ for `counter inet vpm decided`
    /// made with `{ packets 12345 bytes 6789012 }` (captured on Debian 12's kernel).
    static let answer: [UInt8] = [
        0x60, 0x00, 0x00, 0x00, 0x12, 0x0a, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00, 0x41, 0x1d, 0x00, 0x00,
        0x01, 0x00, 0x00, 0x03, 0x08, 0x00, 0x01, 0x00, 0x76, 0x70, 0x6d, 0x00, 0x0c, 0x00, 0x02, 0x00,
        0x64, 0x65, 0x63, 0x69, 0x64, 0x65, 0x64, 0x00, 0x08, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01,
        0x0c, 0x00, 0x06, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00, 0x05, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x1c, 0x00, 0x04, 0x00, 0x0c, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x67, 0x97, 0x94, 0x0c, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x30, 0x39,
    ]

    func testTheKernelsAnswerIsParsed() throws {
        XCTAssertEqual(NFTables.counter(fromMessage: Self.answer), NFTablesCounter(packets: 12345, bytes: 6_789_012))
    }

    /// A truncated nested attribute, another object type or another message: nothing.
    func testAnythingElseIsRefused() {
        var truncated = Self.answer
        truncated[0] = UInt8(truncated.count - 4)  // the message ends inside NFTA_COUNTER_PACKETS
        XCTAssertNil(NFTables.counter(fromMessage: Array(truncated.dropLast(4))))
        var quota = Self.answer
        quota[47] = 2  // NFTA_OBJ_TYPE's value: NFT_OBJECT_QUOTA
        XCTAssertNil(NFTables.counter(fromMessage: quota))
        var table = Self.answer
        table[4] = 0  // NFT_MSG_NEWTABLE
        XCTAssertNil(NFTables.counter(fromMessage: table))
        XCTAssertNil(NFTables.counter(fromMessage: Array(Self.answer.prefix(12))))
    }

    /// The request against the kernel: the counter's values as nft set them, then as the
    /// traffic through a rule naming it moved them; a missing counter is ENOENT, said so.
    func testACounterIsReadFromTheKernel() throws {
        try Privileged.requireRoot()
        for tool in ["nft", "socat"] where !Command.exists(tool) {
            XCTFail("\(tool) is missing (Debian packages nftables, socat)")
            throw XCTSkip("no \(tool)")
        }
        let lab = try NetworkLab(name: Privileged.labName("nft"))
        defer { lab.tearDown() }
        try lab.checked(lab.server, ["nft", "add", "table", "inet", "vpmtest"])
        try lab.checked(lab.server, ["nft", "add", "counter", "inet", "vpmtest", "seen", "{ packets 12345 bytes 6789012 }"])
        XCTAssertEqual(try read(in: lab, table: "vpmtest", name: "seen"), NFTablesCounter(packets: 12345, bytes: 6_789_012))

        try lab.checked(lab.server, ["nft", "reset", "counter", "inet", "vpmtest", "seen"])
        try lab.checked(lab.server, ["nft", "add", "chain", "inet", "vpmtest", "in", "{ type filter hook input priority 0; }"])
        try lab.checked(lab.server, ["nft", "add", "rule", "inet", "vpmtest", "in", "udp", "dport", "9999", "counter", "name", "seen"])
        for _ in 0..<3 {
            try lab.checked(lab.client, ["sh", "-c", "printf xy | socat -u - UDP:\(lab.server.address):9999"])
        }
        let counted = try read(in: lab, table: "vpmtest", name: "seen")
        XCTAssertEqual(counted.packets, 3)
        XCTAssertEqual(counted.bytes, 3 * 30, "three datagrams of 2 bytes: 20 + 8 + 2 each")

        XCTAssertThrowsError(try read(in: lab, table: "vpmtest", name: "other")) { error in
            XCTAssertEqual((error as? NetfilterError)?.errno, .noSuchFileOrDirectory)
            XCTAssertTrue("\(error)".contains("no such table or counter"), "\(error)")
        }
        XCTAssertThrowsError(try read(in: lab, table: "absent", name: "seen"))
    }

    /// Reads from a thread inside the host's namespace: the socket belongs to its creator's.
    private func read(in lab: NetworkLab, table: String, name: String) throws -> NFTablesCounter {
        final class Outcome: @unchecked Sendable { var result: Result<NFTablesCounter, any Error>? }
        let outcome = Outcome()
        let finished = DispatchSemaphore(value: 0)
        let thread = Thread {
            defer { finished.signal() }
            outcome.result = Result { () throws -> NFTablesCounter in
                try lab.enterOnCurrentThread(lab.server)
                return try NFTables.counter(.inet, table: table, name: name)
            }
        }
        thread.start()
        finished.wait()
        return try XCTUnwrap(outcome.result).get()
    }
}
