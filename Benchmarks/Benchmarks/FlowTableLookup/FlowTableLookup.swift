// The flow table on the packet path: for a packet of a known flow the engine looks its key
// up and updates the flow (state, counters, last seen). Measured at 10 to 1,000,000 flows
// with keys drawn at random, so the large tables miss the caches as a busy engine would.
// Also reports the resident memory the filled table costs per flow.
#if canImport(Glibc)
import Glibc
#endif
import Benchmark
import FlowTable
import Packet

/// The flow numbered `index`: 64 client ports per client address, clients in 198.18.0.0/15.
@inline(__always)
private func key(_ index: Int) -> FlowKey {
    FlowKey(
        transport: .tcp,
        client: IPAddress(ipv4: 0xC612_0000 &+ UInt32(truncatingIfNeeded: index >> 6)),
        clientPort: 10_000 &+ UInt16(truncatingIfNeeded: index & 63),
        server: IPAddress(198, 18, 0, 1),
        initialPort: 9000)
}

/// Resident bytes of this process (/proc/self/statm, second field, in pages).
private func residentBytes() -> Int {
    guard let file = fopen("/proc/self/statm", "r") else { return 0 }
    defer { fclose(file) }
    var size = 0, resident = 0
    guard withUnsafeMutablePointer(to: &size, { sizePointer in
        withUnsafeMutablePointer(to: &resident) { residentPointer in
            withVaList([sizePointer, residentPointer]) { vfscanf(file, "%ld %ld", $0) }
        }
    }) == 2 else { return 0 }
    return resident * sysconf(Int32(_SC_PAGESIZE))
}

/// The table under test and what it cost, built in a benchmark's setup and dropped in its teardown.
private final class Fixture {
    let table: FlowTable
    let count: Int
    let bytesPerFlow: Int

    init(count: Int) {
        let before = residentBytes()
        table = FlowTable(capacity: count)
        for index in 0..<count {
            guard case .inserted(let handle) = table.insert(
                key(index), virtualPort: 20_017, aid: "bench", mode: .source, peer: nil, now: 1)
            else { fatalError("flow \(index) was not inserted") }
            // SYN, SYN-ACK, ACK: established, as the flows of a busy engine are.
            _ = table.update(handle, direction: .toServer, tcpFlags: [.syn], bytes: 60, now: 1)
            _ = table.update(handle, direction: .toClient, tcpFlags: [.syn, .ack], bytes: 60, now: 1)
            _ = table.update(handle, direction: .toServer, tcpFlags: [.ack], bytes: 52, now: 1)
        }
        self.count = count
        bytesPerFlow = (residentBytes() - before) / count
    }
}

nonisolated(unsafe) private var fixture: Fixture?

/// A random flow number below `count` from a 64-bit LCG (Knuth's MMIX constants): no
/// memory is read to pick it, so only the table's own cache misses are measured.
@inline(__always)
private func nextFlow(_ state: inout UInt64, _ count: Int) -> Int {
    state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
    return Int((state >> 32) % UInt64(count))
}

private let bytesPerFlowMetric = BenchmarkMetric.custom("resident bytes per flow", polarity: .prefersSmaller, useScalingFactor: false)

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .throughput, .mallocCountTotal, bytesPerFlowMetric],
        timeUnits: .nanoseconds,
        scalingFactor: .kilo,
        maxDuration: .seconds(1),
        maxIterations: 1_000)

    for count in [10, 1_000, 100_000, 1_000_000] {
        // What the engine does per packet of a known flow: find it, then account the packet
        // (which also moves the flow to the tail of its state's last-seen list).
        Benchmark("lookup+update, \(count) flows", closure: { benchmark in
            guard let fixture else { return benchmark.error("no table") }
            let table = fixture.table
            benchmark.measurement(bytesPerFlowMetric, fixture.bytesPerFlow)
            var random = UInt64(truncatingIfNeeded: benchmark.currentIteration) &+ 0x9E37_79B9_7F4A_7C15
            benchmark.startMeasurement()
            for _ in benchmark.scaledIterations {
                let index = nextFlow(&random, count)
                guard let handle = table.lookup(key(index)) else { return benchmark.error("flow \(index) not found") }
                blackHole(table.update(handle, direction: .toServer, tcpFlags: [.ack], bytes: 1500, now: 2))
            }
            benchmark.stopMeasurement()
        }, setup: {
            fixture = Fixture(count: count)
        }, teardown: {
            fixture = nil
        })
        // The lookup alone, to tell the index probe from the update's list maintenance.
        Benchmark("lookup only, \(count) flows", closure: { benchmark in
            guard let fixture else { return benchmark.error("no table") }
            let table = fixture.table
            benchmark.measurement(bytesPerFlowMetric, fixture.bytesPerFlow)
            var random = UInt64(truncatingIfNeeded: benchmark.currentIteration) &+ 0x9E37_79B9_7F4A_7C15
            benchmark.startMeasurement()
            for _ in benchmark.scaledIterations {
                let index = nextFlow(&random, count)
                guard let handle = table.lookup(key(index)) else { return benchmark.error("flow \(index) not found") }
                blackHole(handle)
            }
            benchmark.stopMeasurement()
        }, setup: {
            fixture = Fixture(count: count)
        }, teardown: {
            fixture = nil
        })
    }

    // `vpm flows` at 1M flows: how long the packet path can wait for the table's lock. A
    // walk (SharedFlowTable.snapshot) holds it for one piece of 4,096 slots at a time; the
    // whole-table copy it replaced held it throughout.
    let dump = Benchmark.Configuration(metrics: [.wallClock], timeUnits: .microseconds, scalingFactor: .one,
                                       maxDuration: .seconds(5), maxIterations: 20)
    Benchmark("dump 1000000 flows, one piece of 4096 slots (lock held)", configuration: dump, closure: { benchmark in
        guard let fixture else { return benchmark.error("no table") }
        let slots = fixture.table.slotCount
        var start = (benchmark.currentIteration * 4096) % slots
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            blackHole(fixture.table.snapshot(slots: start..<min(start + 4096, slots)))
            start = (start + 4096) % slots
        }
        benchmark.stopMeasurement()
    }, setup: {
        fixture = Fixture(count: 1_000_000)
    }, teardown: {
        fixture = nil
    })
    Benchmark("dump 1000000 flows, whole table at once (lock held)", configuration: dump, closure: { benchmark in
        guard let fixture else { return benchmark.error("no table") }
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations { blackHole(fixture.table.snapshot()) }
        benchmark.stopMeasurement()
    }, setup: {
        fixture = Fixture(count: 1_000_000)
    }, teardown: {
        fixture = nil
    })
}
