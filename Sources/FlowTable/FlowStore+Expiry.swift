// Per-state LRU lists and expiry. Every packet moves its flow to the tail of its state's
// list, so each list is in last-seen order and its head is the flow to expire first; all
// flows of a list share one timeout, so that order is also deadline order.
extension FlowStore {
    mutating func expire(now: UInt64, limit: Int = .max) -> Int {
        var removedCount = 0
        while removedCount < limit, let slot = earliestExpired(now: now) {
            release(slot)
            expired &+= 1
            removedCount += 1
        }
        return removedCount
    }

    var nextDeadline: UInt64? {
        var earliest: UInt64?
        for list in 0..<FlowState.count where listHeads[list] != Slot.none {
            let deadline = deadline(of: listHeads[list], list: list)
            if earliest.map({ deadline < $0 }) ?? true { earliest = deadline }
        }
        return earliest
    }

    /// The head with the earliest deadline that is not after `now`.
    func earliestExpired(now: UInt64) -> Int32? {
        var best = Slot.none
        var bestDeadline = UInt64.max
        for list in 0..<FlowState.count {
            let head = listHeads[list]
            guard head != Slot.none else { continue }
            let deadline = deadline(of: head, list: list)
            if deadline <= now && (best == Slot.none || deadline < bestDeadline) {
                best = head
                bestDeadline = deadline
            }
        }
        return best == Slot.none ? nil : best
    }

    @inline(__always)
    func deadline(of slot: Int32, list: Int) -> UInt64 {
        let (sum, overflow) = slots[Int(slot)].lastSeen.addingReportingOverflow(
            timeouts.timeout(for: FlowState.at(listIndex: list)))
        return overflow ? .max : sum
    }

    /// Frees one slot in a full table: expired flows first, then one unfinished flow — the
    /// oldest closed one, else the least recently seen opening or one-way UDP flow. Never an
    /// established, closing or answered UDP flow. False when nothing could go.
    mutating func makeRoom(now: UInt64) -> Bool {
        // A few more than needed, so a table full of stale flows drains over a few inserts.
        if expire(now: now, limit: 16) > 0 { return true }
        var victim = listHeads[FlowState.closed.listIndex]
        if victim == Slot.none {
            let opening = listHeads[FlowState.opening.listIndex]
            let udp = listHeads[FlowState.udp.listIndex]
            if opening == Slot.none {
                victim = udp
            } else if udp == Slot.none {
                victim = opening
            } else {
                victim = slots[Int(udp)].lastSeen < slots[Int(opening)].lastSeen ? udp : opening
            }
        }
        guard victim != Slot.none else { return false }
        release(victim)
        evicted &+= 1
        return true
    }

    /// Appends `slot` to the tail of list `list`.
    mutating func link(_ slot: Int32, to list: Int) {
        let index = Int(slot)
        let tail = listTails[list]
        slots[index].previous = tail
        slots[index].next = Slot.none
        if tail == Slot.none {
            listHeads[list] = slot
        } else {
            slots[Int(tail)].next = slot
        }
        listTails[list] = slot
    }

    /// Takes `slot` out of list `list`.
    mutating func unlink(_ slot: Int32, from list: Int) {
        let index = Int(slot)
        let previous = slots[index].previous
        let next = slots[index].next
        if previous == Slot.none {
            listHeads[list] = next
        } else {
            slots[Int(previous)].next = next
        }
        if next == Slot.none {
            listTails[list] = previous
        } else {
            slots[Int(next)].previous = previous
        }
    }

    /// Moves `slot` from list `from` to the tail of list `to` (the same list: a refresh).
    @inline(__always)
    mutating func move(_ slot: Int32, from: Int, to: Int) {
        if from == to && listTails[to] == slot { return }
        unlink(slot, from: from)
        link(slot, to: to)
    }
}
