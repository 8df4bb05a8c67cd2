// The engine's per-packet rewrite: parse an IP packet in place and change its destination
// port, as the userspace datapath does for every packet it translates. The buffers are made once,
// before measuring; a run that allocates shows up as Malloc (total) > 0.
import Benchmark
import Packet

/// One TCP segment of `length` bytes (IP header included), emitted into a buffer that
/// lives as long as the process, with a valid checksum.
private func makePacket(version: IPVersion, length: Int) -> UnsafeMutableRawBufferPointer {
    let ipv6 = version == .v6
    let representation = PacketRepresentation(
        sourceAddress: ipv6 ? IPAddress(high: 0x2001_0db8_0000_0000, low: 2) : IPAddress(198, 18, 0, 2),
        destinationAddress: ipv6 ? IPAddress(high: 0x2001_0db8_0000_0000, low: 1) : IPAddress(198, 18, 0, 1),
        transportProtocol: .tcp, sourcePort: 40_000, destinationPort: 9000,
        sequenceNumber: 1, acknowledgmentNumber: 1, tcpFlags: [.ack], windowSize: 512)
    let payloadLength = length - representation.emittedLength(payloadLength: 0)
    let payload = UnsafeMutableRawBufferPointer.allocate(byteCount: payloadLength, alignment: 8)
    defer { payload.deallocate() }
    for index in 0..<payloadLength { payload[index] = UInt8(truncatingIfNeeded: index &* 31 &+ 7) }
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: length, alignment: 8)
    do {
        _ = try representation.emit(into: buffer, payload: UnsafeRawBufferPointer(payload))
    } catch {
        fatalError("cannot build the \(version) \(length)-byte packet: \(error)")
    }
    return buffer
}

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .throughput, .mallocCountTotal],
        timeUnits: .nanoseconds,
        scalingFactor: .kilo,
        maxDuration: .seconds(1),
        maxIterations: 1_000)

    // 64 bytes: an ACK or a small request. 65,535: the largest GSO super-packet (IPv4 total
    // length and the netlink attribute both stop there; for IPv6 the same bytes on the wire).
    for version in [IPVersion.v4, .v6] {
        for length in [64, 65_535] {
            for checksum in [ChecksumState.complete, .partial] {
                let buffer = makePacket(version: version, length: length)
                let name = "rewrite \(version == .v4 ? "IPv4" : "IPv6") \(length) B, \(checksum == .complete ? "complete (incremental)" : "partial (full recompute)")"
                Benchmark(name) { benchmark in
                    var port: UInt16 = 20_017
                    for _ in benchmark.scaledIterations {
                        do {
                            var packet = try IPPacket(buffer)
                            try packet.setDestinationPort(port, checksum: checksum)
                            blackHole(packet.transportChecksum)
                        } catch {
                            benchmark.error("rewrite failed: \(error)")
                            return
                        }
                        port = port == 20_017 ? 9000 : 20_017
                    }
                }
            }
        }
    }
}
