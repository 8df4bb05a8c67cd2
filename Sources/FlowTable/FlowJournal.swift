/// What happened to a flow, in order: `vpm flows --watch`'s NEW, UPDATE and DESTROY.
public struct FlowEvent: Sendable, Equatable {
    public enum Kind: String, Sendable, Codable {
        /// The flow was recorded (its first packet was decided).
        case new
        /// Its state changed (from packets, or from conntrack on the kernel datapath).
        case update
        /// It left the table: ended, expired, evicted or removed.
        case destroy
    }

    /// Numbers every event of the table, from 0, without gaps.
    public var sequence: UInt64
    public var kind: Kind
    /// The flow as it was when the event happened.
    public var translation: Translation
}

/// The flow table's recent events, kept only while someone watches (`FlowTable.watch`):
/// a ring of `capacity` events, allocated when the first watcher arrives, so recording
/// costs nothing without one and never allocates with one. A watcher that falls more than
/// `capacity` events behind is told how many it lost.
struct FlowJournal {
    static let capacity = 16384

    private var ring: [FlowEvent] = []
    /// The sequence number the next event gets.
    private(set) var next: UInt64 = 0
    var watchers = 0

    init() { ring.reserveCapacity(Self.capacity) }

    mutating func record(_ kind: FlowEvent.Kind, _ translation: Translation) {
        let event = FlowEvent(sequence: next, kind: kind, translation: translation)
        if ring.count < Self.capacity {
            ring.append(event)  // within the reserved capacity: no allocation
        } else {
            ring[Int(next % UInt64(Self.capacity))] = event
        }
        next &+= 1
    }

    /// The events numbered `cursor` and later still in the ring, and how many before them
    /// were overwritten since `cursor`.
    func events(from cursor: UInt64) -> (events: [FlowEvent], lost: UInt64) {
        let oldest = next - UInt64(ring.count)
        let start = max(cursor, oldest)
        guard start < next else { return ([], 0) }
        var events: [FlowEvent] = []
        events.reserveCapacity(Int(next - start))
        for sequence in start..<next {
            events.append(ring[ring.count < Self.capacity ? Int(sequence) : Int(sequence % UInt64(Self.capacity))])
        }
        return (events, start - cursor)
    }
}

extension FlowStore {
    /// Records an event for flow `slot` when someone watches.
    @inline(__always)
    mutating func journal(_ kind: FlowEvent.Kind, _ slot: Int32) {
        guard journal != nil else { return }
        let translation = translation(at: Int(slot))
        journal!.record(kind, translation)
    }
}

extension FlowTable {
    /// Starts recording events for a new watcher; returns its cursor (the sequence of the
    /// next event). Control plane: the first watcher allocates the ring.
    public func startWatching() -> UInt64 {
        inPlace { store in
            if store.journal == nil { store.journal = FlowJournal() }
            store.journal!.watchers += 1
            return store.journal!.next
        }
    }

    /// A watcher leaves; the last one frees the ring, and recording stops.
    public func stopWatching() {
        inPlace { store in
            guard store.journal != nil else { return }
            store.journal!.watchers -= 1
            if store.journal!.watchers <= 0 { store.journal = nil }
        }
    }

    /// The events from `cursor` on (copies, for the control thread), how many were lost
    /// before them (the watcher fell behind the ring), and the cursor to ask with next.
    public func events(from cursor: UInt64) -> (events: [FlowEvent], lost: UInt64, next: UInt64) {
        inPlace { store in
            guard let journal = store.journal else { return ([], 0, cursor) }
            let (events, lost) = journal.events(from: cursor)
            return (events, lost, journal.next)
        }
    }
}
