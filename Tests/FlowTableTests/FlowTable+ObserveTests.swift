@testable import FlowTable
import Packet
import XCTest

/// The kernel datapath's flows: state and counters come from conntrack, not from packets.
final class FlowTableObserveTests: XCTestCase {
    func testObserveSetsStateCountersAndRefreshes() {
        let table = Fixture.table()
        let handle = table.add(Fixture.key(1), now: 0)
        let counters = FlowCounters(packetsToServer: 3, bytesToServer: 180, packetsToClient: 2, bytesToClient: 120)
        XCTAssertTrue(table.observe(handle, state: .established, counters: counters, now: 40_000))
        XCTAssertEqual(table[handle].state, .established)
        XCTAssertEqual(table[handle].counters, counters)
        XCTAssertEqual(table[handle].lastSeen, 40_000)
        // Opening would have expired (100 ms); established (1 s) has not: the flow moved lists.
        XCTAssertEqual(table.expire(now: 40_500), 0)
        XCTAssertEqual(table.count, 1)
    }

    func testObserveWithoutTrafficLetsTheFlowAge() {
        let table = Fixture.table()
        let handle = table.add(Fixture.key(1), now: 0)
        let counters = FlowCounters(packetsToServer: 1, bytesToServer: 60)
        table.observe(handle, state: .closed, counters: counters, now: 10)
        table.observe(handle, state: .closed, counters: counters, now: 40)
        XCTAssertEqual(table[handle].lastSeen, 10)
        XCTAssertEqual(table.expire(now: 60), 1, "closed times out 50 ms after its last traffic")
    }

    /// Expiry looks at the oldest flow of each state only: observing flows whose counters did
    /// not move must keep that order.
    func testObserveKeepsLastSeenOrder() {
        let table = Fixture.table()
        let older = table.add(Fixture.key(1), now: 0)
        let newer = table.add(Fixture.key(2), now: 50)
        table.observe(newer, state: .opening, counters: .zero, now: 60)
        table.observe(older, state: .opening, counters: .zero, now: 60)
        XCTAssertEqual(table.expire(now: 100), 1, "the older flow expires at 100 ms")
        XCTAssertFalse(table.contains(older))
        XCTAssertTrue(table.contains(newer))
    }

    func testObserveNeverMovesLastSeenBack() {
        let table = Fixture.table()
        let handle = table.add(Fixture.key(1), now: 500)
        table.observe(handle, state: .closing, counters: FlowCounters(packetsToServer: 1), now: 100)
        XCTAssertEqual(table[handle].lastSeen, 500)
        XCTAssertEqual(table[handle].state, .closing)
    }

    func testObserveOfAStaleHandleDoesNothing() {
        let table = Fixture.table()
        let handle = table.add(Fixture.key(1), now: 0)
        table.remove(handle)
        XCTAssertFalse(table.observe(handle, state: .closed, counters: .zero, now: 1))
        XCTAssertEqual(table.count, 0)
    }

    /// `statistics.transitions` counts state changes, by packets and by an outside tracker,
    /// and nothing else (the userspace datapath saves its snapshot when it moves).
    func testStateChangesAreCounted() throws {
        let table = FlowTable(capacity: 4)
        let handle = try XCTUnwrap(table.insert(Fixture.key(1), virtualPort: 20017, aid: "acme", mode: .source, peer: nil, now: 1).handle)
        XCTAssertEqual(table.statistics.transitions, 0)
        _ = table.update(handle, direction: .toServer, tcpFlags: [.syn], bytes: 60, now: 2)
        _ = table.update(handle, direction: .toClient, tcpFlags: [.syn, .ack], bytes: 60, now: 3)
        _ = table.update(handle, direction: .toServer, tcpFlags: [.ack], bytes: 52, now: 4)
        let established = table.statistics.transitions
        XCTAssertEqual(table.translation(handle)?.state, .established)
        XCTAssertGreaterThanOrEqual(established, 1)
        _ = table.update(handle, direction: .toServer, tcpFlags: [.ack], bytes: 1500, now: 5)
        XCTAssertEqual(table.statistics.transitions, established, "a packet that changes no state")
        table.observe(handle, state: .closing, counters: FlowCounters(), now: 6)
        XCTAssertEqual(table.statistics.transitions, established + 1)
    }
}
