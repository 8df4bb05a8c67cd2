public import FlowTable
public import Packet
import Synchronization

/// The flow table shared by the engine's threads, behind a lock: the queue threads update
/// it per packet, the control and conntrack threads read and change it. (`FlowTable` is
/// the table itself; `FlowStore` its storage.) The lock is held only around table calls,
/// never across a syscall.
public final class SharedFlowTable: Sendable {
    private let mutex: Mutex<FlowTable>

    public init(_ table: sending FlowTable) {
        mutex = Mutex(table)
    }

    public func withLock<Result: ~Copyable>(_ body: (FlowTable) throws -> sending Result) rethrows -> sending Result {
        try mutex.withLock { table in try body(table) }
    }

    /// Per packet: the flow of `key`, counted and advanced, or nil. With `virtualPort`, a flow
    /// to another virtual port does not count (a client may not reuse its port to reach
    /// another instance). With `decideAgain`, a SYN meeting a closed flow removes it and
    /// returns nil, so the new connection is decided afresh instead of inheriting the old
    /// decision (needed where the client's AID, not its address, decides). With `renew` (the
    /// caller saw a connection start: a TCP SYN, any UDP datagram), any flow meeting it is
    /// removed and nil returned (the old flow's state may lag behind).
    public func update(
        _ key: FlowKey, direction: Direction, flags: TCPFlags, bytes: Int, now: UInt64,
        virtualPort: UInt16? = nil, decideAgain: Bool = false, renew: Bool = false
    ) -> FlowUpdate? {
        withLock { table -> FlowUpdate? in
            guard let handle = table.lookup(key) else { return nil }
            if let virtualPort, table.virtualPort(handle) != virtualPort { return nil }
            if renew || (decideAgain && flags.startsConnection && table.translation(handle)?.state == .closed) {
                table.remove(handle)
                return nil
            }
            return table.update(handle, direction: direction, tcpFlags: flags, bytes: bytes, now: now)
        }
    }

    /// Records a new flow and counts its first packet, when it came with one (a cooperative
    /// server records the flow before the packet arrives). A flow already under the key is
    /// kept and counted, or with `replacing` (a reused client port) removed first.
    /// Returns false when the table is full.
    public func record(
        _ key: FlowKey, virtualPort: UInt16, aid: AID, mode: FlowMode, peer: String?, now: UInt64,
        firstPacket: (flags: TCPFlags, bytes: Int)? = nil, replacing: Bool = false
    ) -> Bool {
        withLock { table -> Bool in
            if replacing, let existing = table.lookup(key) { _ = table.remove(existing) }
            switch table.insert(key, virtualPort: virtualPort, aid: aid, mode: mode, peer: peer, now: now) {
            case .inserted(let handle), .existing(let handle):
                if let firstPacket {
                    _ = table.update(handle, direction: .toServer, tcpFlags: firstPacket.flags, bytes: firstPacket.bytes, now: now)
                }
                return true
            case .full:
                return false
            }
        }
    }

    /// Slots per lock hold in the walks below: a packet waits at most for one piece
    /// (about 4,096 slots), however large the table.
    public static let walkPiece = 4096

    /// Every flow, copied a piece of the table at a time (the lock is released between
    /// pieces), in the order the flows started. Each flow is copied whole; a flow that lives
    /// through the walk appears exactly once (a flow keeps its slot); one that starts or
    /// ends meanwhile may or may not. For the control plane (the one-line `flows` answer;
    /// `vpm flows`, `vpm apps` and the snapshot use `walk`).
    public func snapshot(piece: Int = walkPiece) -> [Translation] {
        var flows: [Translation] = []
        walk(piece: piece) { flows += $0; return true }
        // Stable: slot order breaks firstSeen ties, as in `FlowTable.snapshot()`.
        return flows.enumerated().sorted { ($0.element.firstSeen, $0.offset) < ($1.element.firstSeen, $1.offset) }.map(\.element)
    }

    /// Every flow as `snapshot(piece:)` copies them, handed to `body` a piece at a time in
    /// slot order (no piece empty), so a caller that streams them never holds the whole
    /// table: `vpm flows` on a million flows. `body` runs without the lock; false stops.
    public func walk(piece: Int = walkPiece, _ body: ([Translation]) throws -> Bool) rethrows {
        let slots = withLock { $0.slotCount }
        var start = 0
        while start < slots {
            let range = start..<min(start + piece, slots)
            let flows = withLock { $0.snapshot(slots: range) }
            start = range.upperBound
            if !flows.isEmpty, try !body(flows) { return }
        }
    }

    /// Flows by AID and mode, counted a piece at a time like `snapshot(piece:)`.
    public func census(piece: Int = walkPiece) -> [FlowCensus: Int] {
        let slots = withLock { $0.slotCount }
        var counts: [FlowCensus: Int] = [:]
        var start = 0
        while start < slots {
            let range = start..<min(start + piece, slots)
            withLock { $0.census(slots: range, into: &counts) }
            start = range.upperBound
        }
        return counts
    }

    /// Removes the flow under `key` unless it belongs to `aid`. A client address:port that a
    /// new socket of `aid` now holds must not be carried to the old socket's instance by the
    /// flow its predecessor left (UDP has no handshake to end it). Returns whether the table
    /// keeps a flow of `aid` there (false: none, or another AID's, now removed).
    public func keepsFlow(_ key: FlowKey, of aid: AID) -> (kept: Bool, removed: Translation?) {
        withLock { table -> (Bool, Translation?) in
            guard let handle = table.lookup(key), let flow = table.translation(handle) else { return (false, nil) }
            if flow.aid == aid { return (true, nil) }
            return (false, table.remove(handle) ? flow : nil)
        }
    }

    /// Removes the flows to `virtualPort` (its instance is gone: a later instance that gets
    /// the same port must not inherit them). Control plane: scans the table.
    public func removeFlows(toVirtualPort virtualPort: UInt16, transport: TransportProtocol) -> Int {
        let gone = snapshot().filter { $0.virtualPort == virtualPort && $0.key.transport == transport && $0.mode != .cooperative }
        return withLock { table -> Int in
            var removed = 0
            // Only the flow the walk saw: a new connection under the same key since is not its.
            for flow in gone {
                if let handle = table.lookup(flow.key), let current = table.translation(handle),
                   current.firstSeen == flow.firstSeen, current.virtualPort == virtualPort {
                    if table.remove(handle) { removed += 1 }
                }
            }
            return removed
        }
    }
}
