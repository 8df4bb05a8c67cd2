/// The request nonces the server has accepted within the replay window: a ring in arrival
/// order (for expiry and eviction) and a set (for lookup), both sized once.
///
/// When the ring is full and its oldest nonce is still inside the window, that nonce is
/// evicted and the cache can no longer prove that a message as old as the evicted one is
/// fresh: `horizon` rises to the evicted message's timestamp, and every later request
/// whose timestamp is not newer than `horizon` is refused as replayed. Overflow thus
/// refuses some fresh requests (from peers whose clocks lag) but never admits a replay.
struct NonceCache {
    struct Nonce: Hashable {
        var high: UInt64
        var low: UInt64

        /// Parses 32 lowercase hex digits.
        init?(_ text: String) {
            guard text.utf8.count == 32, let bytes = NegotiationMessage.bytes(fromLowercaseHex: text.utf8) else { return nil }
            high = bytes[0..<8].reduce(0) { $0 << 8 | UInt64($1) }
            low = bytes[8..<16].reduce(0) { $0 << 8 | UInt64($1) }
        }
    }

    enum Verdict: Equatable {
        case fresh
        case replayed
    }

    private struct Entry {
        var nonce: Nonce
        var timestamp: Int64
        var seenAt: Int64
    }

    let capacity: Int
    let window: Int64
    private var ring: [Entry?]
    private var head = 0
    private var count = 0
    private var members: Set<Nonce>
    /// Requests not newer than this are refused: see the type's comment.
    private(set) var horizon = Int64.min
    private(set) var evictions: UInt64 = 0

    init(capacity: Int = 65_536, window: Int64 = NegotiationMessage.replayWindowMilliseconds) {
        precondition(capacity > 0)
        self.capacity = capacity
        self.window = window
        ring = Array(repeating: nil, count: capacity)
        members = Set(minimumCapacity: capacity)
    }

    var isEmpty: Bool { count == 0 }
    var storedCount: Int { count }

    /// Records `nonce` (from a message stamped `timestamp`) at wall-clock time `now`, all
    /// in milliseconds, unless it was seen within the window or cannot be proven fresh.
    mutating func admit(_ nonce: Nonce, timestamp: Int64, now: Int64) -> Verdict {
        expire(now: now)
        if members.contains(nonce) || timestamp <= horizon { return .replayed }
        if count == capacity {
            let oldest = ring[head]!
            horizon = max(horizon, oldest.timestamp)
            evictions += 1
            removeOldest()
            if timestamp <= horizon { return .replayed }
        }
        ring[(head + count) % capacity] = Entry(nonce: nonce, timestamp: timestamp, seenAt: now)
        count += 1
        members.insert(nonce)
        return .fresh
    }

    /// Refuses, as not provably fresh, every message stamped before `time`: what a new
    /// cache knows nothing about (the server's start).
    mutating func refuse(olderThan time: Int64) {
        horizon = max(horizon, time - 1)
    }

    /// Forgets the nonces seen at least `window` ago. The ring is in arrival order; if the
    /// clock went back, a later entry may expire before an earlier one and simply waits.
    mutating func expire(now: Int64) {
        while count > 0, let oldest = ring[head], now - oldest.seenAt >= window {
            removeOldest()
        }
    }

    private mutating func removeOldest() {
        if let oldest = ring[head] { members.remove(oldest.nonce) }
        ring[head] = nil
        head = (head + 1) % capacity
        count -= 1
    }
}
