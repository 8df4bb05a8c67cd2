import Control
import Decision
@testable import Engine
import FlowTable
import Foundation
import Packet
import XCTest

/// The userspace datapath's flow snapshot: written atomically, read back whole; restored
/// flows keep their AID, mode, state, counters and idle time; stale ones, records that do
/// not parse and files that do not read are left out, and said so.
final class FlowSnapshotTests: XCTestCase {
    var path = ""

    override func setUp() {
        path = NSTemporaryDirectory() + "vpm-snapshot-\(getpid())-\(UUID().uuidString).flows"
    }

    override func tearDown() {
        try? FileManager.default.removeItem(atPath: path)
        try? FileManager.default.removeItem(atPath: path + ".tmp")
    }

    func key(_ port: UInt16) -> FlowKey {
        FlowKey(transport: .tcp, client: IPAddress(198, 18, 1, 2), clientPort: port, server: IPAddress(198, 18, 0, 1), initialPort: 9000)
    }

    /// A table with an established source-routed flow (idle 2 s), a half-open cooperative one
    /// (not saved: its SYN's retransmission is decided afresh) and a closed one idle 8 s
    /// (`closed` times out after 10 s).
    func table(now: UInt64) -> SharedFlowTable {
        let table = SharedFlowTable(FlowTable(capacity: 16))
        table.withLock { table in
            let established = table.insert(key(40000), virtualPort: 20017, aid: "acme", mode: .source, peer: nil, now: now - 2_000).handle!
            table.observe(established, state: .established, counters: FlowCounters(packetsToServer: 5, bytesToServer: 500), now: now - 2_000)
            _ = table.insert(key(40001), virtualPort: 20500, aid: "globex", mode: .cooperative, peer: "198.18.0.1:9901", now: now - 1_000)
            let closed = table.insert(key(40002), virtualPort: 20017, aid: "acme", mode: .source, peer: nil, now: now - 8_000).handle!
            table.observe(closed, state: .closed, counters: FlowCounters(packetsToServer: 1), now: now - 8_000)
        }
        return table
    }

    func testWrittenThenRestoredIntoANewEngine() throws {
        let now: UInt64 = 1_000_000
        let saved = FlowSnapshot(flows: table(now: now).snapshot(), now: now, wallClock: 1_700_000_000)
        try saved.write(to: path)
        XCTAssertFalse(FileManager.default.fileExists(atPath: path + ".tmp"))
        XCTAssertEqual((try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int), 0o600)
        let read = try XCTUnwrap(try FlowSnapshot.read(from: path))
        XCTAssertEqual(read, saved)
        XCTAssertEqual(read.flows.map(\.clientPort), [40002, 40000], "the half-open flow is not saved")

        // The next engine starts 3 s later, its monotonic clock elsewhere.
        let later: UInt64 = 50_000
        let fresh = SharedFlowTable(FlowTable(capacity: 16))
        let restored = read.restore(into: fresh, now: later, wallClock: 1_700_000_003)
        XCTAssertEqual(restored, FlowSnapshot.Restored(flows: 1, stale: 1, invalid: 0, refused: 0), "the closed flow idled 11 s")
        let flow = try XCTUnwrap(fresh.snapshot().first)
        XCTAssertEqual(flow.key, key(40000))
        XCTAssertEqual(flow.aid, "acme")
        XCTAssertEqual(flow.mode, .source)
        XCTAssertEqual(flow.state, .established)
        XCTAssertEqual(flow.virtualPort, 20017)
        XCTAssertEqual(flow.counters.packetsToServer, 5)
        XCTAssertEqual(later - flow.lastSeen, 5_000, "idle 2 s when saved, plus the 3 s the file waited")
    }

    /// The engine writes a piece of records at a time; the file reads back as the same
    /// snapshot, whatever the piece size (an empty table included).
    func testWrittenInPiecesReadsAsOneSnapshot() throws {
        let now: UInt64 = 1_000_000
        let table = SharedFlowTable(FlowTable(capacity: 64))
        table.withLock { table in
            for port in UInt16(41000)..<41007 {
                let handle = table.insert(key(port), virtualPort: 20017, aid: "acme", mode: .source, peer: nil, now: now - 1_000).handle!
                table.observe(handle, state: .established, counters: FlowCounters(packetsToServer: UInt64(port)), now: now - 1_000)
            }
        }
        let flows = table.snapshot()
        let expected = FlowSnapshot(flows: flows, now: now, wallClock: 1_700_000_000.25)
        for piece in [1, 2, 3, 7, 4096] {
            try FlowSnapshot.write(flows: flows, now: now, wallClock: 1_700_000_000.25, to: path, piece: piece)
            XCTAssertEqual(try FlowSnapshot.read(from: path), expected, "pieces of \(piece)")
        }
        try FlowSnapshot.write(flows: [], now: now, wallClock: 5, to: path, piece: 2)
        XCTAssertEqual(try FlowSnapshot.read(from: path), FlowSnapshot(flows: [], now: now, wallClock: 5))
        XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8), #"{"flows":[],"savedAt":5,"version":1}"# + "\n")
    }

    func testACorruptTruncatedOrForeignFileIsReportedNotRestored() throws {
        XCTAssertNil(try FlowSnapshot.read(from: path), "no file: nothing to restore, no error")
        let now: UInt64 = 1_000_000
        try FlowSnapshot(flows: table(now: now).snapshot(), now: now).write(to: path)
        let whole = try Data(contentsOf: URL(fileURLWithPath: path))
        try whole.prefix(whole.count / 2).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try FlowSnapshot.read(from: path)) { error in
            XCTAssertTrue("\(error)".contains("is truncated or corrupt"), "\(error)")
        }
        try Data(#"{"version": 99, "savedAt": 0, "flows": []}"#.utf8).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try FlowSnapshot.read(from: path)) { error in
            XCTAssertTrue("\(error)".contains("has version 99"), "\(error)")
        }
    }

    func testRecordsThatDoNotParseAreCountedAndSkipped() {
        var snapshot = FlowSnapshot(flows: [], now: 0, wallClock: 100)
        let record = FlowRecord(transport: "tcp", state: "established", mode: "source", client: "198.18.1.2", clientPort: 1,
                                server: "198.18.0.1", initialPort: 9000, virtualPort: 20017, aid: "acme", peer: nil,
                                age: 1, idle: 1, packetsToServer: 0, bytesToServer: 0, packetsToClient: 0, bytesToClient: 0)
        var badAddress = record, badState = record, badAID = record
        badAddress.client = "198.18.1"
        badState.state = "dancing"
        badAID.aid = ""
        snapshot.flows = [record, badAddress, badState, badAID]
        let restored = snapshot.restore(into: SharedFlowTable(FlowTable(capacity: 4)), now: 10_000, wallClock: 100)
        XCTAssertEqual(restored, FlowSnapshot.Restored(flows: 1, stale: 0, invalid: 3, refused: 0))
    }
}
