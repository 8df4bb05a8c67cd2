@testable import FlowTable
import Packet
import XCTest

final class FlowTableTests: XCTestCase {
    func testInsertThenLookup() {
        let table = Fixture.table()
        let key = Fixture.key(1)
        XCTAssertNil(table.lookup(key))
        let result = table.insert(key, virtualPort: 20017, aid: "blue", mode: .cooperative, peer: "198.18.0.9", now: 5)
        guard case .inserted(let handle) = result else { return XCTFail("\(result)") }
        XCTAssertEqual(table.lookup(key), handle)
        XCTAssertEqual(table.count, 1)
        XCTAssertEqual(table[handle], Translation(
            key: key, virtualPort: 20017, aid: "blue", mode: .cooperative, peer: "198.18.0.9",
            state: .opening, firstSeen: 5, lastSeen: 5, counters: .zero))
        XCTAssertEqual(table.virtualPort(handle), 20017)
    }

    func testUDPFlowStartsAsUDP() {
        let table = Fixture.table()
        let handle = table.add(Fixture.key(1, .udp), now: 0)
        XCTAssertEqual(table[handle].state, .udp)
    }

    func testInsertOfAKnownKeyLeavesTheFlowAlone() {
        let table = Fixture.table()
        let key = Fixture.key(1)
        let handle = table.add(key, now: 0, aid: "blue", virtualPort: 20017)
        let again = table.insert(key, virtualPort: 20018, aid: "green", mode: .local, peer: nil, now: 9)
        XCTAssertEqual(again, .existing(handle))
        XCTAssertEqual(table[handle].aid, "blue")
        XCTAssertEqual(table[handle].virtualPort, 20017)
        XCTAssertEqual(table[handle].lastSeen, 0)
        XCTAssertEqual(table.count, 1)
        XCTAssertEqual(table.statistics.inserted, 1)
    }

    func testUpdateReturnsTheVirtualPortAndTheStateChange() {
        let table = Fixture.table()
        let handle = table.add(Fixture.key(1), now: 0, virtualPort: 20042)
        XCTAssertEqual(
            table.update(handle, direction: .toServer, tcpFlags: .syn, bytes: 60, now: 1),
            FlowUpdate(virtualPort: 20042, state: .opening, previousState: .opening))
        _ = table.update(handle, direction: .toClient, tcpFlags: [.syn, .ack], bytes: 60, now: 2)
        let last = table.update(handle, direction: .toServer, tcpFlags: .ack, bytes: 52, now: 3)
        XCTAssertEqual(last, FlowUpdate(virtualPort: 20042, state: .established, previousState: .opening))
        XCTAssertEqual(last?.stateChanged, true)
    }

    func testCountersAndTimes() {
        let table = Fixture.table()
        let handle = table.add(Fixture.key(1), now: 10)
        table.packet(handle, .toServer, .syn, bytes: 60, now: 10)
        table.packet(handle, .toClient, [.syn, .ack], bytes: 60, now: 11)
        table.packet(handle, .toServer, .ack, bytes: 52, now: 12)
        table.packet(handle, .toServer, [.ack, .psh], bytes: 1_500, now: 13)
        table.packet(handle, .toClient, .ack, bytes: 65_000, now: 14)
        table.packet(handle, .toClient, .ack, bytes: -1, now: 15)
        let flow = table[handle]
        XCTAssertEqual(flow.counters, FlowCounters(packetsToServer: 3, bytesToServer: 1_612, packetsToClient: 3, bytesToClient: 65_060))
        XCTAssertEqual(flow.firstSeen, 10)
        XCTAssertEqual(flow.lastSeen, 15)
    }

    func testLastSeenNeverStepsBack() {
        let table = Fixture.table()
        let handle = table.add(Fixture.key(1), now: 100)
        table.packet(handle, .toServer, .syn, now: 90)
        XCTAssertEqual(table[handle].lastSeen, 100)
    }

    func testRemoveByKeyAndByHandle() {
        let table = Fixture.table()
        let first = table.add(Fixture.key(1), now: 0)
        let second = table.add(Fixture.key(2), now: 0)
        XCTAssertTrue(table.remove(Fixture.key(1)))
        XCTAssertFalse(table.remove(Fixture.key(1)))
        XCTAssertNil(table.lookup(Fixture.key(1)))
        XCTAssertFalse(table.contains(first))
        XCTAssertTrue(table.remove(second))
        XCTAssertFalse(table.remove(second))
        XCTAssertEqual(table.count, 0)
        XCTAssertEqual(table.statistics.removed, 2)
        XCTAssertEqual(table.snapshot(), [])
    }

    func testStaleHandleIsDetectedEvenWhenItsSlotIsReused() {
        let table = Fixture.table(capacity: 1)
        let old = table.add(Fixture.key(1), now: 0)
        table.remove(Fixture.key(1))
        let new = table.add(Fixture.key(2), now: 1)
        XCTAssertNotEqual(old, new)
        XCTAssertFalse(table.contains(old))
        XCTAssertTrue(table.contains(new))
        XCTAssertNil(table.translation(old))
        XCTAssertNil(table.virtualPort(old))
        XCTAssertNil(table.update(old, direction: .toServer, tcpFlags: .syn, bytes: 60, now: 2))
        XCTAssertFalse(table.remove(old))
        // The stale update touched nothing.
        XCTAssertEqual(table[new].counters, .zero)
        XCTAssertEqual(table.count, 1)
    }

    func testStaleHandleAfterExpiry() {
        let table = Fixture.table()
        let handle = table.add(Fixture.key(1), now: 0)
        XCTAssertEqual(table.expire(now: 100, limit: 10), 1)
        XCTAssertFalse(table.contains(handle))
        XCTAssertNil(table.update(handle, direction: .toServer, bytes: 60, now: 100))
    }

    func testHandleOfAnotherTableSizeIsNotValid() {
        let big = Fixture.table(capacity: 8)
        for number in 0..<8 { _ = big.add(Fixture.key(number), now: 0) }
        let handle = big.lookup(Fixture.key(7))!
        XCTAssertFalse(Fixture.table(capacity: 8).contains(handle))
    }

    func testSnapshotListsEveryFlowOldestFirst() {
        let table = Fixture.table()
        let udp = table.insert(Fixture.key(3, .udp), virtualPort: 20020, aid: "green", mode: .local, peer: nil, now: 7).handle!
        table.packet(udp, .toServer, bytes: 100, now: 8)
        table.packet(udp, .toClient, bytes: 200, now: 9)
        let tcp = table.insert(Fixture.key(1), virtualPort: 20017, aid: "blue", mode: .cooperative, peer: "peer-a", now: 3).handle!
        table.packet(tcp, .toServer, .syn, bytes: 60, now: 3)
        _ = table.add(Fixture.key(2), now: 5)
        table.remove(Fixture.key(2))
        XCTAssertEqual(table.snapshot(), [
            Translation(
                key: Fixture.key(1), virtualPort: 20017, aid: "blue", mode: .cooperative, peer: "peer-a",
                state: .opening, firstSeen: 3, lastSeen: 3,
                counters: FlowCounters(packetsToServer: 1, bytesToServer: 60)),
            Translation(
                key: Fixture.key(3, .udp), virtualPort: 20020, aid: "green", mode: .local, peer: nil,
                state: .udpStream, firstSeen: 7, lastSeen: 9,
                counters: FlowCounters(packetsToServer: 1, bytesToServer: 100, packetsToClient: 1, bytesToClient: 200)),
        ])
    }

    func testStatistics() {
        let table = Fixture.table(capacity: 2)
        _ = table.add(Fixture.key(1), now: 0)
        _ = table.add(Fixture.key(2), now: 0)
        table.remove(Fixture.key(2))
        _ = table.expire(now: 100, limit: 10)
        XCTAssertEqual(table.statistics, FlowTableStatistics(
            active: 0, inserted: 2, expired: 1, evicted: 0, refusedFull: 0, removed: 1, reopened: 0, capacity: 2))
    }

    func testMemoryPerFlow() {
        // The record stays trivial (no reference counting when moved) at 104 bytes; the AID
        // and peer strings live beside it (32 bytes), the index adds 8 bytes per bucket
        // (2 to 4 buckets per flow of capacity).
        XCTAssertTrue(_isPOD(Slot.self))
        XCTAssertEqual(MemoryLayout<Slot>.stride, 104)
        XCTAssertEqual(MemoryLayout<FlowHandle>.size, 8)
        XCTAssertEqual(MemoryLayout<String>.stride + MemoryLayout<String?>.stride, 32)
    }

    func testIndexSurvivesHeavyChurn() {
        // Many removals out of the middle of probe runs: every survivor stays reachable.
        let table = Fixture.table(capacity: 4_096)
        var present = Set<Int>()
        var generator = SplitMix64(seed: 7)
        for round in 0..<40_000 {
            let number = Int(generator.next() % 6_000)
            if present.contains(number) {
                XCTAssertTrue(table.remove(Fixture.key(number)))
                present.remove(number)
            } else if present.count < 4_096 {
                _ = table.add(Fixture.key(number), now: UInt64(round))
                present.insert(number)
            }
        }
        XCTAssertEqual(table.count, present.count)
        for number in 0..<6_000 {
            XCTAssertEqual(table.lookup(Fixture.key(number)) != nil, present.contains(number), "\(number)")
        }
    }
}
