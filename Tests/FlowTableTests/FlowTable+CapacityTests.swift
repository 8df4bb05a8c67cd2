import FlowTable
import Packet
import XCTest

final class FlowTableCapacityTests: XCTestCase {
    func testSynFloodCannotPushOutEstablishedFlows() {
        let capacity = 1_000
        let table = Fixture.table(capacity: capacity, timeouts: .standard)
        let established = (0..<400).map { table.establish(Fixture.key($0), now: 0) }
        let flood = 10 * capacity
        for attacker in 0..<flood {
            let now = 1 + UInt64(attacker) / 100  // 100 SYNs a millisecond: none expires
            let result = table.insert(Fixture.key(100_000 + attacker), virtualPort: 20018, aid: "blue", mode: .source, peer: nil, now: now)
            guard case .inserted(let handle) = result else { return XCTFail("SYN \(attacker): \(result)") }
            table.packet(handle, .toServer, .syn, bytes: 60, now: now)
            XCTAssertLessThanOrEqual(table.count, capacity)
        }
        XCTAssertEqual(table.count, capacity)
        for (number, handle) in established.enumerated() {
            XCTAssertTrue(table.contains(handle))
            let flow = table[handle]
            XCTAssertEqual(flow.key, Fixture.key(number))
            XCTAssertEqual(flow.state, .established)
            XCTAssertEqual(flow.counters, FlowCounters(packetsToServer: 2, bytesToServer: 120, packetsToClient: 1, bytesToClient: 60))
        }
        // The newest SYNs hold the rest of the table; each with its one packet counted.
        let survivors = table.snapshot().filter { $0.state == .opening }
        XCTAssertEqual(Set(survivors.map(\.key)), Set((flood - 600..<flood).map { Fixture.key(100_000 + $0) }))
        XCTAssertTrue(survivors.allSatisfy { $0.counters == FlowCounters(packetsToServer: 1, bytesToServer: 60) })
        let statistics = table.statistics
        XCTAssertEqual(statistics.inserted, UInt64(400 + flood))
        XCTAssertEqual(statistics.evicted, UInt64(flood - 600))
        XCTAssertEqual(statistics.refusedFull, 0)
        XCTAssertEqual(statistics.expired, 0)
        XCTAssertEqual(statistics.active, capacity)
    }

    func testTableFullOfLiveFlowsRefuses() {
        let table = Fixture.table(capacity: 3)
        let handles = [
            table.establish(Fixture.key(1), now: 0),
            table.establish(Fixture.key(2), now: 0),
            table.add(Fixture.key(3, .udp), now: 0),
        ]
        table.packet(handles[2], .toClient, now: 0)  // answered: udpStream
        table.packet(handles[1], .toServer, [.fin, .ack], now: 0)  // closing is not evicted either
        for attempt in 0..<5 {
            XCTAssertEqual(table.insert(Fixture.key(10 + attempt), virtualPort: 20017, aid: "blue", mode: .source, peer: nil, now: 1), .full)
        }
        XCTAssertEqual(table.count, 3)
        XCTAssertTrue(handles.allSatisfy(table.contains))
        XCTAssertEqual(table.statistics.refusedFull, 5)
        XCTAssertEqual(table.statistics.evicted, 0)
        // An existing key is still found in a full table.
        XCTAssertEqual(table.insert(Fixture.key(1), virtualPort: 20017, aid: "blue", mode: .source, peer: nil, now: 1), .existing(handles[0]))
    }

    func testExpiredFlowsMakeRoomBeforeAnyEviction() {
        let table = Fixture.table(capacity: 2)
        _ = table.establish(Fixture.key(1), now: 0)  // expires at 1_000
        _ = table.add(Fixture.key(2), now: 950)  // opening, expires at 1_050
        XCTAssertNotNil(table.insert(Fixture.key(3), virtualPort: 20017, aid: "blue", mode: .source, peer: nil, now: 1_000).handle)
        XCTAssertNil(table.lookup(Fixture.key(1)))
        XCTAssertNotNil(table.lookup(Fixture.key(2)))
        XCTAssertEqual(table.statistics.expired, 1)
        XCTAssertEqual(table.statistics.evicted, 0)
    }

    func testClosedFlowsGoBeforeOpeningOnes() {
        let table = Fixture.table(capacity: 3)
        _ = table.add(Fixture.key(1), now: 0)  // opening, the oldest
        let closed = table.establish(Fixture.key(2), now: 5)
        table.packet(closed, .toClient, .rst, now: 10)
        _ = table.add(Fixture.key(3), now: 5)
        _ = table.add(Fixture.key(4), now: 20)
        XCTAssertNil(table.lookup(Fixture.key(2)))
        _ = table.add(Fixture.key(5), now: 21)
        XCTAssertNil(table.lookup(Fixture.key(1)))
        XCTAssertEqual(table.keys(in: .opening), [Fixture.key(3), Fixture.key(4), Fixture.key(5)])
        XCTAssertEqual(table.statistics.evicted, 2)
    }

    func testLeastRecentlySeenUnansweredFlowGoesFirst() {
        let table = Fixture.table(capacity: 3)
        let udp = table.add(Fixture.key(1, .udp), now: 0)
        let opening = table.add(Fixture.key(2), now: 1)
        _ = table.establish(Fixture.key(3), now: 2)
        table.packet(udp, .toServer, now: 3)  // the UDP flow is now the more recent
        _ = table.add(Fixture.key(4), now: 4)
        XCTAssertFalse(table.contains(opening))
        XCTAssertTrue(table.contains(udp))
        _ = table.add(Fixture.key(5), now: 5)
        XCTAssertFalse(table.contains(udp))
        XCTAssertEqual(table.count, 3)
    }

    func testUDPFloodCannotPushOutAnsweredFlows() {
        let table = Fixture.table(capacity: 10, timeouts: .standard)
        let stream = table.add(Fixture.key(1, .udp), now: 0)
        table.packet(stream, .toClient, now: 0)
        let connection = table.establish(Fixture.key(2), now: 0)
        for sender in 0..<1_000 {
            let handle = table.insert(Fixture.key(1_000 + sender, .udp), virtualPort: 20017, aid: "blue", mode: .source, peer: nil, now: 1).handle
            XCTAssertNotNil(handle)
        }
        XCTAssertTrue(table.contains(stream))
        XCTAssertTrue(table.contains(connection))
        XCTAssertEqual(table.count, 10)
        XCTAssertEqual(table.statistics.evicted, 992)
    }

    func testCapacityOfOne() {
        let table = Fixture.table(capacity: 1)
        let first = table.add(Fixture.key(1), now: 0)
        let second = table.add(Fixture.key(2), now: 1)  // evicts the opening flow
        XCTAssertFalse(table.contains(first))
        table.packet(second, .toClient, .ack, now: 1)
        table.packet(second, .toServer, .ack, now: 1)
        XCTAssertEqual(table[second].state, .established)
        XCTAssertEqual(table.insert(Fixture.key(3), virtualPort: 1, aid: "blue", mode: .source, peer: nil, now: 2), .full)
    }
}
