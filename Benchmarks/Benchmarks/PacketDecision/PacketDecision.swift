// The engine's whole per-packet decision, PacketPipeline.process (decision, then the datapath), as a queue thread runs
// it: parse, look the flow up under the flow table's lock, advance its state, then rewrite
// the ports (userspace datapath) or answer with a mark (kernel datapath). Every buffer is
// made before measuring; Malloc (total) > 0 would mean the decision allocates.
import Benchmark
import Decision
import Engine
import FlowTable
import Netfilter
import Packet
import Policy

private let configuration: Configuration = {
    do {
        return try Configuration.parse("""
            virtual-ports: 20000-20999
            ports: [9000]
            applications:
              acme:
                instances: {9000: 20017}
            sources:
              - {from: 198.18.1.0/24, aid: acme}
            """)
    } catch {
        fatalError("benchmark configuration: \(error)")
    }
}()

/// `aids` applications (aid0 … ), each with an instance on 9000 (virtual ports from 20000), and
/// `rules` source rules: 198.18.1.0/24 (the benchmark's client) for aid0, then single
/// addresses from 198.18.2.0 on (up to 130,560 of them), spread over the AIDs.
private func scaledConfiguration(rules: Int, aids: Int) -> Configuration {
    precondition(rules >= 1 && rules <= 130_561 && aids >= 1 && aids <= 10_000)
    var text = "virtual-ports: 20000-29999\nports: [9000]\napplications:\n"
    for index in 0..<aids { text += "  aid\(index): {instances: {9000: \(20_000 + index)}}\n" }
    text += "sources:\n  - {from: 198.18.1.0/24, aid: aid0}\n"
    for index in 0..<(rules - 1) {
        let host = 2 * 256 + index  // from 198.18.2.0
        text += "  - {from: 198.\(18 + host / 65_536).\(host / 256 % 256).\(host % 256), aid: aid\(index % aids)}\n"
    }
    do { return try Configuration.parse(text) } catch { fatalError("scaled configuration: \(error)") }
}

nonisolated(unsafe) private var scaledProcessors: [String: (PacketPipeline, SharedFlowTable)] = [:]

private let client = IPAddress(198, 18, 1, 2)
private let server = IPAddress(198, 18, 0, 1)
private let preRouting: UInt8 = 0, localOut: UInt8 = 3

/// A 64-byte TCP segment (IP header included, valid checksum) in a buffer that lives as
/// long as the process.
private func segment(from source: IPAddress, _ sourcePort: UInt16, to destination: IPAddress, _ destinationPort: UInt16,
                     flags: TCPFlags) -> UnsafeMutableRawBufferPointer {
    let representation = PacketRepresentation(
        sourceAddress: source, destinationAddress: destination, transportProtocol: .tcp,
        sourcePort: sourcePort, destinationPort: destinationPort,
        sequenceNumber: 1, acknowledgmentNumber: 1, tcpFlags: flags, windowSize: 512)
    let payload = [UInt8](repeating: 0x5a, count: 64 - representation.emittedLength(payloadLength: 0))
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64, alignment: 8)
    do {
        _ = try payload.withUnsafeBytes { try representation.emit(into: buffer, payload: $0) }
    } catch {
        fatalError("cannot build the segment: \(error)")
    }
    return buffer
}

private func queued(_ buffer: UnsafeMutableRawBufferPointer, hook: UInt8) -> QueuedPacket {
    QueuedPacket(id: 1, hardwareProtocol: 0x0800, hook: hook, mark: nil, payload: buffer, originalLength: buffer.count,
                 info: [])
}

/// A processor whose flow table holds one established connection from client:40000.
private func establishedProcessor(_ datapath: Datapath) -> PacketPipeline {
    var processor = PacketPipeline(configuration: configuration, store: SharedFlowTable(FlowTable(capacity: 1024)),
                                    datapath: datapath)
    let handshake = [
        (segment(from: client, 40_000, to: server, 9000, flags: [.syn]), preRouting),
        (segment(from: server, 20_017, to: client, 40_000, flags: [.syn, .ack]), localOut),
        (segment(from: client, 40_000, to: server, 9000, flags: [.ack]), preRouting),
    ]
    for (buffer, hook) in handshake {
        _ = processor.process(queued(buffer, hook: hook), now: 1_000, receivedAt: 1_000)
        buffer.deallocate()
    }
    return processor
}

/// Kernel datapath, a new connection each iteration: the client's SYN is decided, its flow
/// recorded and the verdict marked; the flow is removed again so the next SYN is new too.
private func measureNewConnections(_ benchmark: Benchmark, _ processor: inout PacketPipeline, _ store: SharedFlowTable) {
    let syn = segment(from: client, 40_000, to: server, 9000, flags: [.syn])
    defer { syn.deallocate() }
    let key = FlowKey(transport: .tcp, client: client, clientPort: 40_000, server: server, initialPort: 9000)
    let packet = queued(syn, hook: preRouting)
    benchmark.startMeasurement()
    for _ in benchmark.scaledIterations {
        let verdict = processor.process(packet, now: 2_000, receivedAt: 1_000)
        guard verdict.mark != nil, store.withLock({ $0.remove(key) }) else {
            benchmark.error("expected a marked SYN and a recorded flow, got \(verdict)")
            return
        }
    }
}

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .throughput, .mallocCountTotal],
        timeUnits: .nanoseconds,
        scalingFactor: .kilo,
        maxDuration: .seconds(1),
        maxIterations: 1_000)

    // As the engine calls it: with the batch's arrival time, so new connections are timed.
    // Userspace datapath, steady state: a client's segment of an established flow arrives
    // (PREROUTING, 9000 -> 20017) and the instance's reply leaves (OUTPUT, 20017 -> 9000).
    // The rewrite happens in place, so each iteration first restores the original 64 bytes.
    for (name, source, sourcePort, destination, destinationPort, hook) in [
        ("decide userspace, arriving segment of an established flow", client, UInt16(40_000), server, UInt16(9000), preRouting),
        ("decide userspace, leaving reply of an established flow", server, 20_017, client, 40_000, localOut),
    ] {
        Benchmark(name) { benchmark in
            var processor = establishedProcessor(.userspace)
            let original = segment(from: source, sourcePort, to: destination, destinationPort, flags: [.ack])
            let working = UnsafeMutableRawBufferPointer.allocate(byteCount: original.count, alignment: 8)
            defer { original.deallocate(); working.deallocate() }
            let packet = queued(working, hook: hook)
            benchmark.startMeasurement()
            for _ in benchmark.scaledIterations {
                working.copyMemory(from: UnsafeRawBufferPointer(original))
                let verdict = processor.process(packet, now: 2_000, receivedAt: 1_000)
                guard verdict.payloadLength == 64 else {
                    benchmark.error("expected a rewritten 64-byte packet, got \(verdict)")
                    return
                }
            }
        }
    }

    // Scale: the same new-connection decision with many source rules and AIDs. The client's
    // rule is a /24 while the others are single addresses (/32), so the matcher looks in two
    // prefix tables, the client's last: each rule costs memory, not time, if the matcher is
    // what it claims (one hash lookup per distinct prefix length).
    for (rules, aids) in [(10, 10), (1_000, 10), (100_000, 10), (1_000, 1_000)] {
        Benchmark("decide kernel, SYN of a new connection, \(rules) source rules, \(aids) AIDs") { benchmark in
            // Built once, outside every sample: parsing 100,000 rules takes longer than a sample.
            let name = "\(rules)/\(aids)"
            if scaledProcessors[name] == nil {
                let store = SharedFlowTable(FlowTable(capacity: 1024))
                scaledProcessors[name] = (PacketPipeline(configuration: scaledConfiguration(rules: rules, aids: aids), store: store,
                                                         datapath: .kernel), store)
            }
            guard var (processor, store) = scaledProcessors[name] else { return }
            measureNewConnections(benchmark, &processor, store)
        }
    }

    // Kernel datapath, a new connection: the SYN is decided (source policy, AID, instance),
    // its flow recorded and the verdict carries the mark; the flow is removed again so that
    // every iteration decides a new connection. Again while `vpm flows --watch` runs: each
    // iteration then also records two events (new, destroy) in the flow table's ring.
    for watched in [false, true] {
        let name = "decide kernel, SYN of a new connection (+ flow removed)" + (watched ? ", watched" : "")
        Benchmark(name) { benchmark in
            let table = FlowTable(capacity: 1024)
            if watched { _ = table.startWatching() }
            let store = SharedFlowTable(table)
            var processor = PacketPipeline(configuration: configuration, store: store, datapath: .kernel)
            measureNewConnections(benchmark, &processor, store)
            if watched && store.withLock({ $0.events(from: 0).next }) == 0 {
                benchmark.error("the watched table recorded no events")
            }
        }
    }
}
