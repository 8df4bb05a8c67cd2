@testable import FlowTable
import Packet
import XCTest

/// `vpm flows --watch`'s source: every new flow, state change and removal, in order, only
/// while someone watches; a watcher that falls behind is told how much it lost.
final class FlowTableJournalTests: XCTestCase {
    func kinds(_ events: [FlowEvent]) -> [String] {
        events.map { "\($0.kind.rawValue) \($0.translation.key.clientPort) \($0.translation.state)" }
    }

    func testAConnectionsLifeInOrder() {
        let table = Fixture.table()
        let cursor = table.startWatching()
        defer { table.stopWatching() }
        let handle = table.add(Fixture.key(1), now: 0)
        table.packet(handle, .toServer, .syn, now: 1)           // no change: opening
        table.packet(handle, .toClient, [.syn, .ack], now: 2)
        table.packet(handle, .toServer, .ack, now: 3)           // established
        table.packet(handle, .toServer, [.fin, .ack], now: 4)   // closing
        table.packet(handle, .toClient, .rst, now: 5)           // closed
        XCTAssertEqual(table.expire(now: 1000), 1)
        let (events, lost, next) = table.events(from: cursor)
        XCTAssertEqual(lost, 0)
        XCTAssertEqual(kinds(events), ["new 1 opening", "update 1 established", "update 1 closing", "update 1 closed", "destroy 1 closed"])
        XCTAssertEqual(events.map(\.sequence), Array(cursor..<cursor + 5))
        XCTAssertEqual(next, cursor + 5)
        XCTAssertEqual(events.first?.translation.aid, "blue")
        XCTAssertTrue(table.events(from: next).events.isEmpty)
    }

    func testNothingIsKeptWithoutAWatcher() {
        let table = Fixture.table()
        _ = table.add(Fixture.key(1), now: 0)
        XCTAssertNil(table.store.journal)
        let cursor = table.startWatching()
        table.stopWatching()
        _ = table.add(Fixture.key(2), now: 0)
        XCTAssertNil(table.store.journal, "the last watcher freed the ring")
        XCTAssertTrue(table.events(from: cursor).events.isEmpty)
    }

    func testConntrackObservationsAndEvictionsAreEvents() {
        let table = Fixture.table(capacity: 1)
        let cursor = table.startWatching()
        defer { table.stopWatching() }
        let first = table.add(Fixture.key(1), now: 0)
        XCTAssertTrue(table.observe(first, state: .opening, counters: .zero, now: 1))  // same state: no event
        _ = table.add(Fixture.key(2), now: 2)  // full: the half-open flow is evicted
        XCTAssertEqual(kinds(table.events(from: cursor).events), ["new 1 opening", "destroy 1 opening", "new 2 opening"])
    }

    func testAWatcherThatFallsBehindIsToldHowMuchItLost() {
        let table = Fixture.table(capacity: 4)
        let cursor = table.startWatching()
        defer { table.stopWatching() }
        let total = FlowJournal.capacity + 10
        for index in 0..<total / 2 {
            let handle = table.add(Fixture.key(index), now: 0)
            XCTAssertTrue(table.remove(handle))
        }
        let (events, lost, next) = table.events(from: cursor)
        XCTAssertEqual(lost, UInt64(total - FlowJournal.capacity))
        XCTAssertEqual(events.count, FlowJournal.capacity)
        XCTAssertEqual(events.first?.sequence, cursor + lost)
        XCTAssertEqual(events.last?.sequence, next - 1)
        XCTAssertEqual(next, cursor + UInt64(total))
    }
}
