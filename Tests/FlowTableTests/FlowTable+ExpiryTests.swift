import FlowTable
import Packet
import XCTest

final class FlowTableExpiryTests: XCTestCase {
    /// A flow brought to `state` by packets at time `at`.
    private func flow(in state: FlowState, number: Int, table: FlowTable, at now: UInt64) -> FlowHandle {
        let udp = state == .udp || state == .udpStream
        let handle = table.add(Fixture.key(number, udp ? .udp : .tcp), now: now)
        let packets: [(Direction, TCPFlags)] = switch state {
        case .opening: [(.toServer, .syn)]
        case .established: [(.toServer, .syn), (.toClient, [.syn, .ack]), (.toServer, .ack)]
        case .closing: [(.toServer, .syn), (.toClient, [.syn, .ack]), (.toServer, .ack), (.toServer, [.fin, .ack])]
        case .closed: [(.toServer, .syn), (.toClient, [.rst, .ack])]
        case .udp: [(.toServer, [])]
        case .udpStream: [(.toServer, []), (.toClient, [])]
        }
        for (direction, flags) in packets { table.packet(handle, direction, flags, now: now) }
        XCTAssertEqual(table[handle].state, state)
        return handle
    }

    func testEachStateExpiresExactlyAtItsTimeout() {
        for state in FlowState.allCases {
            let timeout = Fixture.timeouts.timeout(for: state)
            let table = Fixture.table()
            let handle = flow(in: state, number: 1, table: table, at: 1_000)
            XCTAssertEqual(table.nextDeadline, 1_000 + timeout, "\(state)")
            XCTAssertEqual(table.expire(now: 1_000 + timeout - 1, limit: 10), 0, "\(state) just before its timeout")
            XCTAssertTrue(table.contains(handle), "\(state)")
            XCTAssertEqual(table.expire(now: 1_000 + timeout, limit: 10), 1, "\(state) at its timeout")
            XCTAssertFalse(table.contains(handle), "\(state)")
            XCTAssertNil(table.lookup(Fixture.key(1, state == .udp || state == .udpStream ? .udp : .tcp)))
            XCTAssertEqual(table.statistics.expired, 1)
            XCTAssertNil(table.nextDeadline)
        }
    }

    func testAStateChangeSwitchesTimeout() {
        let table = Fixture.table()
        let handle = flow(in: .established, number: 1, table: table, at: 0)
        XCTAssertEqual(table.expire(now: 999, limit: 10), 0)
        table.packet(handle, .toServer, .rst, now: 999)
        XCTAssertEqual(table.nextDeadline, 999 + 50)
        XCTAssertEqual(table.expire(now: 1_048, limit: 10), 0)
        XCTAssertEqual(table.expire(now: 1_049, limit: 10), 1)
    }

    func testTrafficKeepsAFlowAlive() {
        let table = Fixture.table()
        let handle = flow(in: .udp, number: 1, table: table, at: 0)
        for now in stride(from: UInt64(250), through: 2_500, by: 250) {
            table.packet(handle, .toServer, now: now)
            XCTAssertEqual(table.expire(now: now + 299, limit: 10), 0)
        }
        XCTAssertEqual(table.expire(now: 2_800, limit: 10), 1)
    }

    func testARefreshedFlowMovesToTheTail() {
        let table = Fixture.table()
        let first = flow(in: .opening, number: 1, table: table, at: 0)
        let second = flow(in: .opening, number: 2, table: table, at: 10)
        let third = flow(in: .opening, number: 3, table: table, at: 20)
        table.packet(first, .toServer, .syn, now: 30)  // retransmitted SYN: now the newest
        XCTAssertEqual(table.nextDeadline, 110)
        XCTAssertEqual(table.expire(now: 110, limit: 10), 1)
        XCTAssertFalse(table.contains(second))
        XCTAssertEqual(table.expire(now: 120, limit: 10), 1)
        XCTAssertFalse(table.contains(third))
        XCTAssertTrue(table.contains(first))
        XCTAssertEqual(table.expire(now: 130, limit: 10), 1)
        XCTAssertEqual(table.count, 0)
    }

    func testExpiresEarliestDeadlineFirstAcrossStates() {
        let table = Fixture.table()
        let udpStream = flow(in: .udpStream, number: 1, table: table, at: 0)  // deadline 600
        let closed = flow(in: .closed, number: 2, table: table, at: 500)  // deadline 550
        let udp = flow(in: .udp, number: 3, table: table, at: 200)  // deadline 500
        XCTAssertEqual(table.expire(now: 1_000, limit: 1), 1)
        XCTAssertFalse(table.contains(udp))
        XCTAssertEqual(table.expire(now: 1_000, limit: 1), 1)
        XCTAssertFalse(table.contains(closed))
        XCTAssertTrue(table.contains(udpStream))
    }

    func testLimitBoundsTheWork() {
        let table = Fixture.table(capacity: 100)
        for number in 0..<100 { _ = flow(in: .opening, number: number, table: table, at: UInt64(number)) }
        XCTAssertEqual(table.expire(now: 1_000, limit: 30), 30)
        XCTAssertEqual(table.count, 70)
        // The oldest went first.
        XCTAssertNil(table.lookup(Fixture.key(29)))
        XCTAssertNotNil(table.lookup(Fixture.key(30)))
        XCTAssertEqual(table.expire(now: 1_000, limit: 0), 0)
        XCTAssertEqual(table.expire(now: 1_000, limit: 1_000), 70)
        XCTAssertEqual(table.statistics.expired, 100)
    }

    func testOnlyIdleFlowsGo() {
        let table = Fixture.table(capacity: 100)
        for number in 0..<50 { _ = flow(in: .established, number: number, table: table, at: 0) }
        for number in 50..<100 { _ = flow(in: .established, number: number, table: table, at: 500) }
        XCTAssertEqual(table.expire(now: 1_000, limit: 1_000), 50)
        XCTAssertEqual(table.keys(in: .established), Set((50..<100).map { Fixture.key($0) }))
    }

    func testNeverExpiringTimeoutDoesNotOverflow() {
        var timeouts = Fixture.timeouts
        timeouts.established = .max
        let table = Fixture.table(timeouts: timeouts)
        _ = flow(in: .established, number: 1, table: table, at: 5)
        XCTAssertEqual(table.nextDeadline, .max)
        XCTAssertEqual(table.expire(now: .max - 1, limit: 10), 0)
    }

    func testChangedTimeoutsApplyAtTheNextExpiry() {
        let table = Fixture.table()
        _ = flow(in: .established, number: 1, table: table, at: 0)
        table.timeouts.established = 10
        XCTAssertEqual(table.expire(now: 10, limit: 10), 1)
    }
}
