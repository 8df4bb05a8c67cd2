import FlowTable
import Packet
import XCTest

/// The flow table against a plain Dictionary that does everything the slow, obvious way:
/// scans for expiry and eviction, its own copy of the state rules, and per-flow touch
/// numbers instead of linked lists.
final class FlowTableModelTests: XCTestCase {
    func testSmallTableManyKeys() {
        check(seed: 1, capacity: 64, keys: 200, operations: 8_000)
    }

    func testTableOfOne() {
        check(seed: 2, capacity: 1, keys: 4, operations: 3_000)
    }

    func testRoomyTable() {
        check(seed: 3, capacity: 600, keys: 500, operations: 20_000)
    }

    func testManySeeds() {
        for seed in 10..<20 as Range<UInt64> {
            check(seed: seed, capacity: 1 + Int(seed % 7) * 5, keys: 40, operations: 2_000)
        }
    }

    private func check(seed: UInt64, capacity: Int, keys: Int, operations: Int) {
        var random = SplitMix64(seed: seed)
        // Long enough for flows to pile up and run through their states before they expire.
        let timeouts = FlowTimeouts(opening: 100, established: 5_000, closing: 300, closed: 50, udp: 200, udpStream: 2_000)
        let table = FlowTable(capacity: capacity, timeouts: timeouts)
        let model = Model(capacity: capacity, timeouts: timeouts)
        var handles: [FlowKey: FlowHandle] = [:]
        var stale: [FlowHandle] = []
        var now: UInt64 = 1_000
        let flagChoices: [TCPFlags] = [.syn, [.syn, .ack], .ack, [.psh, .ack], [.fin, .ack], .fin, .rst, [.rst, .ack], []]
        let aids: [AID] = ["blue", "green", "a-rather-long-application-identifier"]
        func key(_ number: Int) -> FlowKey { Fixture.key(number, number % 3 == 0 ? .udp : .tcp) }

        for step in 0..<operations {
            let context = "seed \(seed) step \(step)"
            let number = Int(random.next() % UInt64(keys))
            switch random.next() % 100 {
            case 0..<35:
                // Mostly a flow that exists, sometimes any key.
                let present = (0..<keys).filter { model.flows[key($0)] != nil }
                let flowKey = random.next() % 4 != 0 && !present.isEmpty
                    ? key(present[Int(random.next() % UInt64(present.count))]) : key(number)
                let handle = table.lookup(flowKey)
                XCTAssertEqual(handle, handles[flowKey], context)
                guard let handle, model.flows[flowKey] != nil else { break }
                let direction: Direction = random.next() % 2 == 0 ? .toServer : .toClient
                let flags = flagChoices[Int(random.next() % UInt64(flagChoices.count))]
                let bytes = Int(random.next() % 1_500)
                let got = table.update(handle, direction: direction, tcpFlags: flags, bytes: bytes, now: now)
                let expected = model.update(flowKey, direction: direction, flags: flags, bytes: bytes, now: now)
                XCTAssertEqual(got, expected, "\(context): \(flags) \(direction)")
            case 35..<60:
                let flowKey = key(number)
                let aid = aids[Int(random.next() % 3)]
                let mode = FlowMode.allCases[Int(random.next() % 3)]
                let peer: String? = mode == .cooperative ? "198.18.0.\(number % 7)" : nil
                let port = UInt16(20_000 + number % 50)
                let got = table.insert(flowKey, virtualPort: port, aid: aid, mode: mode, peer: peer, now: now)
                let expected = model.insert(flowKey, virtualPort: port, aid: aid, mode: mode, peer: peer, now: now)
                switch (got, expected) {
                case (.inserted(let handle), .inserted):
                    handles[flowKey] = handle
                case (.existing(let handle), .existing):
                    XCTAssertEqual(handle, handles[flowKey], context)
                case (.full, .full):
                    break
                default:
                    XCTFail("\(context): insert \(flowKey) gave \(got), the model \(expected)")
                }
            case 60..<65:
                XCTAssertEqual(table.remove(key(number)), model.remove(key(number)), context)
            case 65..<77:
                let limit = Int(random.next() % 6)
                XCTAssertEqual(table.expire(now: now, limit: limit), model.expire(now: now, limit: limit), context)
            case 77..<82:
                if let handle = stale.randomElement(using: &random) {
                    XCTAssertNil(table.update(handle, direction: .toServer, tcpFlags: .syn, bytes: 1, now: now), context)
                }
            default:
                now += random.next() % 10 == 0 ? random.next() % 400 : random.next() % 4
            }

            // Handles of flows that left the model go stale.
            for (flowKey, handle) in handles where model.flows[flowKey] == nil {
                handles[flowKey] = nil
                stale.append(handle)
                XCTAssertFalse(table.contains(handle), context)
            }
            if stale.count > 500 { stale.removeFirst(250) }
            XCTAssertEqual(table.count, model.flows.count, context)
            XCTAssertLessThanOrEqual(table.count, capacity, context)
            if step % 97 == 0 || step == operations - 1 {
                compare(table, model, stale: stale, context: context)
            }
        }
    }

    private func compare(_ table: FlowTable, _ model: Model, stale: [FlowHandle], context: String) {
        let snapshot = table.snapshot()
        XCTAssertEqual(snapshot.map(\.firstSeen), snapshot.map(\.firstSeen).sorted(), context)
        let byKey = Dictionary(snapshot.map { ($0.key, $0) }, uniquingKeysWith: { first, _ in first })
        XCTAssertEqual(byKey.count, snapshot.count, "\(context): a key twice in the snapshot")
        XCTAssertEqual(byKey, model.flows.mapValues(\.translation), context)
        // The model keeps the counts of flows, not of their state changes.
        var statistics = table.statistics
        statistics.transitions = 0
        XCTAssertEqual(statistics, model.statistics, context)
        XCTAssertEqual(table.nextDeadline, model.flows.values.map(model.deadline).min(), context)
        for handle in stale { XCTAssertFalse(table.contains(handle), context) }
        for flow in model.flows.values {
            guard let handle = table.lookup(flow.translation.key) else { XCTFail("\(context): lost \(flow.translation.key)"); continue }
            XCTAssertEqual(table[handle], flow.translation, context)
        }
    }
}

/// The reference: a Dictionary of flows, each with the number of its latest touch.
private final class Model {
    enum InsertOutcome { case inserted, existing, full }

    struct Flow {
        var translation: Translation
        var touch: UInt64
        var tcp = TCPHistory()
    }

    /// Everything a TCP flow has shown, as plain booleans.
    struct TCPHistory {
        var answered = false
        var sentToServer = false
        var sentToClient = false
        var clientFin = false
        var serverFin = false
        var serverFinLast = false
    }

    let capacity: Int
    let timeouts: FlowTimeouts
    var flows: [FlowKey: Flow] = [:]
    var statistics: FlowTableStatistics
    var touches: UInt64 = 0

    init(capacity: Int, timeouts: FlowTimeouts) {
        self.capacity = capacity
        self.timeouts = timeouts
        statistics = FlowTableStatistics(capacity: capacity)
    }

    func deadline(_ flow: Flow) -> UInt64 {
        let (sum, overflow) = flow.translation.lastSeen.addingReportingOverflow(timeouts.timeout(for: flow.translation.state))
        return overflow ? .max : sum
    }

    func insert(_ key: FlowKey, virtualPort: UInt16, aid: AID, mode: FlowMode, peer: String?, now: UInt64) -> InsertOutcome {
        if flows[key] != nil { return .existing }
        if flows.count == capacity && expire(now: now, limit: 16) == 0 {
            guard let victim = evictionVictim() else {
                statistics.refusedFull += 1
                return .full
            }
            flows[victim] = nil
            statistics.evicted += 1
        }
        touches += 1
        flows[key] = Flow(translation: Translation(
            key: key, virtualPort: virtualPort, aid: aid, mode: mode, peer: peer,
            state: key.transport == .tcp ? .opening : .udp, firstSeen: now, lastSeen: now, counters: .zero),
            touch: touches)
        statistics.inserted += 1
        statistics.active = flows.count
        return .inserted
    }

    private func evictionVictim() -> FlowKey? {
        func oldest(_ state: FlowState) -> Flow? {
            flows.values.filter { $0.translation.state == state }.min { $0.touch < $1.touch }
        }
        if let closed = oldest(.closed) { return closed.translation.key }
        switch (oldest(.opening), oldest(.udp)) {
        case (nil, nil): return nil
        case (let opening?, nil): return opening.translation.key
        case (nil, let udp?): return udp.translation.key
        case (let opening?, let udp?):
            return udp.translation.lastSeen < opening.translation.lastSeen ? udp.translation.key : opening.translation.key
        }
    }

    func remove(_ key: FlowKey) -> Bool {
        guard flows.removeValue(forKey: key) != nil else { return false }
        statistics.removed += 1
        statistics.active = flows.count
        return true
    }

    func expire(now: UInt64, limit: Int) -> Int {
        var count = 0
        while count < limit {
            let expired = flows.values.filter { deadline($0) <= now }
            guard let first = expired.min(by: { order($0) < order($1) }) else { break }
            flows[first.translation.key] = nil
            statistics.expired += 1
            count += 1
        }
        statistics.active = flows.count
        return count
    }

    private func order(_ flow: Flow) -> (UInt64, Int, UInt64) {
        (deadline(flow), FlowState.allCases.firstIndex(of: flow.translation.state)!, flow.touch)
    }

    func update(_ key: FlowKey, direction: Direction, flags: TCPFlags, bytes: Int, now: UInt64) -> FlowUpdate {
        var flow = flows[key]!
        let before = flow.translation.state
        if key.transport == .udp {
            if direction == .toClient { flow.translation.state = .udpStream }
        } else {
            advance(&flow, direction: direction, flags: flags, now: now)
        }
        if direction == .toServer {
            flow.translation.counters.packetsToServer += 1
            flow.translation.counters.bytesToServer += UInt64(bytes)
        } else {
            flow.translation.counters.packetsToClient += 1
            flow.translation.counters.bytesToClient += UInt64(bytes)
        }
        flow.translation.lastSeen = max(flow.translation.lastSeen, now)
        touches += 1
        flow.touch = touches
        flows[key] = flow
        return FlowUpdate(virtualPort: flow.translation.virtualPort, state: flow.translation.state, previousState: before,
                          mode: flow.translation.mode)
    }

    private func advance(_ flow: inout Flow, direction: Direction, flags: TCPFlags, now: UInt64) {
        let toServer = direction == .toServer
        let state = flow.translation.state
        if flags.contains(.rst) {
            flow.translation.state = .closed
        } else if flags.contains(.syn) && flags.contains(.ack) {
            if !toServer && state == .opening { flow.tcp.answered = true }
        } else if flags.contains(.syn) {
            if toServer && state == .closed {
                flow.translation.state = .opening
                flow.translation.firstSeen = now
                flow.translation.counters = .zero
                flow.tcp = TCPHistory()
                statistics.reopened += 1
            }
        } else if state != .closed {
            if state == .opening {
                if toServer { flow.tcp.sentToServer = true } else { flow.tcp.sentToClient = true }
                if (toServer && flags.contains(.ack) && flow.tcp.answered) || (flow.tcp.sentToServer && flow.tcp.sentToClient) {
                    flow.translation.state = .established
                }
            }
            let bothBefore = flow.tcp.clientFin && flow.tcp.serverFin
            if flags.contains(.fin) && !bothBefore {
                if toServer { flow.tcp.clientFin = true } else { flow.tcp.serverFin = true }
                if flow.tcp.clientFin && flow.tcp.serverFin { flow.tcp.serverFinLast = !toServer }
                flow.translation.state = .closing
            } else if flow.translation.state == .closing && bothBefore && flags.contains(.ack)
                && toServer == flow.tcp.serverFinLast {
                flow.translation.state = .closed
            }
        }
    }
}
