import Foundation
import Decision
import FlowTable
import Packet
import XCTest

/// `vpm flows`, `vpm apps` and the metrics read the table a piece at a time, so the packet
/// path never waits for a whole-table copy: the pieces add up to the table, and flows that
/// live through a walk appear exactly once while other threads insert and remove.
final class SharedFlowTableWalkTests: XCTestCase {
    static func key(_ index: Int, port: UInt16 = 9000) -> FlowKey {
        FlowKey(transport: .tcp, client: IPAddress(198, 18, UInt8(1 + index / 50_000), UInt8(index % 250)),
                clientPort: UInt16(10_000 + index % 50_000 / 250), server: IPAddress(198, 18, 0, 1), initialPort: port)
    }

    func fill(_ table: SharedFlowTable, _ count: Int, aid: AID = "acme", mode: FlowMode = .source) {
        for index in 0..<count {
            XCTAssertTrue(table.record(Self.key(index), virtualPort: 20017, aid: aid, mode: mode, peer: nil, now: UInt64(1000 + index)))
        }
    }

    /// A UDP client port that a socket of another AID now holds: the old flow goes, and one
    /// of the same AID (a re-registration of the socket that made it) stays.
    func testAFlowIsRemovedForAnotherAIDOnly() {
        let table = SharedFlowTable(FlowTable(capacity: 16))
        let key = FlowKey(transport: .udp, client: .loopbackIPv4, clientPort: 41_000, server: .loopbackIPv4, initialPort: 5353)
        XCTAssertTrue(table.record(key, virtualPort: 20017, aid: "acme", mode: .local, peer: nil, now: 1000))
        XCTAssertTrue(table.keepsFlow(key, of: "acme").kept)
        XCTAssertEqual(table.snapshot().count, 1)
        let taken = table.keepsFlow(key, of: "globex")
        XCTAssertFalse(taken.kept)
        XCTAssertEqual(taken.removed?.aid, "acme")
        XCTAssertEqual(table.snapshot().count, 0)
        XCTAssertFalse(table.keepsFlow(key, of: "globex").kept)
        XCTAssertNil(table.keepsFlow(key, of: "globex").removed)
    }

    func testPiecesAddUpToTheWholeTableInTheSameOrder() {
        let table = SharedFlowTable(FlowTable(capacity: 10_000))
        fill(table, 7_000)
        let whole = table.withLock { $0.snapshot() }
        for piece in [1, 97, 4096, 1 << 20] {
            XCTAssertEqual(table.snapshot(piece: piece).map(\.key), whole.map(\.key), "piece \(piece)")
        }
        XCTAssertEqual(table.census(piece: 333), table.withLock { $0.census() })
        XCTAssertEqual(table.census(piece: 333).values.reduce(0, +), 7_000)
    }

    /// `vpm flows` streams the walk: pieces in slot order, none empty, and a walk that is
    /// told to stop (the reader hung up) stops.
    func testAWalkHandsOverNonEmptyPiecesAndStopsWhenToldTo() {
        let table = SharedFlowTable(FlowTable(capacity: 65_536))
        fill(table, 9_000)
        // Slots are taken in order: the second range of 4,096 is emptied, so its piece is
        // empty and must not be handed over.
        for index in 4096..<8192 { XCTAssertTrue(table.withLock { $0.remove(Self.key(index)) }) }
        var pieces: [[Translation]] = []
        table.walk(piece: 4096) { pieces.append($0); return true }
        XCTAssertEqual(pieces.map(\.count), [4096, 9_000 - 8192])
        XCTAssertEqual(pieces[0].map(\.key), (0..<4096).map { Self.key($0) })
        XCTAssertEqual(pieces[1].map(\.key), (8192..<9_000).map { Self.key($0) })
        var visited = 0
        table.walk(piece: 1000) { _ in visited += 1; return visited < 2 }
        XCTAssertEqual(visited, 2)
    }

    func testFlowsThatLiveThroughAWalkAppearOnceWhileOthersComeAndGo() {
        let table = SharedFlowTable(FlowTable(capacity: 20_000))
        fill(table, 5_000)
        let steady = Set((0..<5_000).map { Self.key($0) })
        let done = DispatchSemaphore(value: 0)
        let churn = Thread { [table] in
            defer { done.signal() }
            for round in 0..<20 {
                for index in 0..<2_000 {
                    _ = table.record(Self.key(index, port: 9001), virtualPort: 20018, aid: "globex", mode: .source, peer: nil,
                                     now: UInt64(round))
                }
                for index in 0..<2_000 { _ = table.withLock { $0.remove(Self.key(index, port: 9001)) } }
            }
        }
        churn.start()
        for _ in 0..<20 {
            let keys = table.snapshot(piece: 256).map(\.key)
            XCTAssertEqual(Set(keys).count, keys.count, "no flow twice")
            XCTAssertTrue(steady.isSubset(of: Set(keys)), "every steady flow")
        }
        done.wait()
    }
}
