import FlowTable
import Packet

/// Keys, tables and packets shared by the flow table tests.
enum Fixture {
    static let server = IPAddress(198, 18, 0, 1)
    static let initialPort: UInt16 = 9000
    static let virtualPort: UInt16 = 20017

    /// Client number `number` (0...65535 per address) talking to the server's initial port.
    static func key(_ number: Int, _ transport: TransportProtocol = .tcp) -> FlowKey {
        FlowKey(
            transport: transport,
            client: IPAddress(198, 19, UInt8(truncatingIfNeeded: number >> 24), UInt8(truncatingIfNeeded: number >> 16)),
            clientPort: UInt16(truncatingIfNeeded: number),
            server: server,
            initialPort: initialPort
        )
    }

    /// Short timeouts, all different, so a test can see which one applied.
    static let timeouts = FlowTimeouts(opening: 100, established: 1_000, closing: 200, closed: 50, udp: 300, udpStream: 600)

    static func table(capacity: Int = 16, timeouts: FlowTimeouts = Fixture.timeouts) -> FlowTable {
        FlowTable(capacity: capacity, timeouts: timeouts)
    }
}

extension FlowTable {
    /// Inserts a flow for `key` that must be new.
    func add(_ key: FlowKey, now: UInt64, aid: AID = "blue", virtualPort: UInt16 = Fixture.virtualPort) -> FlowHandle {
        guard case .inserted(let handle) = insert(key, virtualPort: virtualPort, aid: aid, mode: .source, peer: nil, now: now) else {
            preconditionFailure("\(key) was not inserted")
        }
        return handle
    }

    /// One packet; returns the state after it (the handle must be current).
    @discardableResult
    func packet(_ handle: FlowHandle, _ direction: Direction, _ flags: TCPFlags = [], bytes: Int = 60, now: UInt64) -> FlowState {
        guard let result = update(handle, direction: direction, tcpFlags: flags, bytes: bytes, now: now) else {
            preconditionFailure("stale \(handle)")
        }
        return result.state
    }

    /// A TCP handshake at `now`, leaving the flow established.
    func establish(_ key: FlowKey, now: UInt64) -> FlowHandle {
        let handle = add(key, now: now)
        packet(handle, .toServer, .syn, now: now)
        packet(handle, .toClient, [.syn, .ack], now: now)
        packet(handle, .toServer, .ack, now: now)
        return handle
    }

    /// The keys of one state's flows, as the snapshot lists them.
    func keys(in state: FlowState) -> Set<FlowKey> {
        Set(snapshot().filter { $0.state == state }.map(\.key))
    }
}

/// A seeded generator, so a failing randomized run can be repeated.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) {
        state = seed
    }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
