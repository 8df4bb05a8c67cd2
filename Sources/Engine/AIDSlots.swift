import Decision
import FlowTable
import Policy
import Synchronization

/// The kernel mark's AID slots (10 bits, `KernelMark`): which AID a connection's mark names.
/// At start each application has 1 + its position in `applications:`, as a restarted
/// engine reads the marks its predecessor left. Applications a reload adds and tenants take
/// the lowest free slot. A slot given up (its application removed, its tenant ended) is
/// given again only once no flow of its AID is left, so no flow's mark ever names another
/// AID. Shared by the control threads, the queue threads (through the registry) and the
/// engine's main thread (`sweep`).
final class AIDSlots: Sendable {
    private struct State {
        var byAID: [AID: Int] = [:]
        /// Slots given up, by the AID whose flows may still carry them.
        var cooling: [Int: AID] = [:]
    }
    private let state: Mutex<State>

    /// The applications' slots at start (`PacketDecider.slots`: 1 + their position).
    convenience init(configuration: Configuration) {
        self.init(slots: PacketDecider.slots(configuration))
    }

    init(slots: [AID: Int]) {
        state = Mutex(State(byAID: slots))
    }

    /// Every AID's slot now.
    var all: [AID: Int] { state.withLock { $0.byAID } }

    /// The AID each slot names now (and, while they cool, the AIDs that gave theirs up).
    var aids: [Int: AID] {
        state.withLock { state in
            var aids = state.cooling
            for (aid, slot) in state.byAID { aids[slot] = aid }
            return aids
        }
    }

    /// A slot for `aid` (its own when it has one): the lowest one neither taken nor cooling;
    /// nil when all 1023 are.
    func take(_ aid: AID) -> Int? {
        state.withLock { state in
            if let slot = state.byAID[aid] { return slot }
            let taken = Set(state.byAID.values).union(state.cooling.keys)
            guard let slot = (1...PacketDecider.maximumSlot).first(where: { !taken.contains($0) }) else { return nil }
            state.byAID[aid] = slot
            return slot
        }
    }

    /// `slot` for `aid` if it is free (a restarted engine's tenant keeps the slot its
    /// flows' marks name); false when it is not.
    func claim(_ slot: Int, for aid: AID) -> Bool {
        state.withLock { state in
            if state.byAID[aid] == slot { return true }
            guard state.byAID[aid] == nil, (1...PacketDecider.maximumSlot).contains(slot),
                  !state.byAID.values.contains(slot), state.cooling[slot] == nil else { return false }
            state.byAID[aid] = slot
            return true
        }
    }

    /// `aid` gives its slot up; it cools until `sweep` finds no flow of `aid`.
    func release(_ aid: AID) {
        state.withLock { state in
            guard let slot = state.byAID.removeValue(forKey: aid) else { return }
            state.cooling[slot] = aid
        }
    }

    /// Frees the cooling slots whose AIDs no flow refers to any more. `hasFlows` is asked
    /// only when a slot cools.
    func sweep(hasFlows: (AID) -> Bool) {
        // `hasFlows` walks the flow table: not under this lock, which the queue threads take
        // when they rebuild their routes.
        let cooling = state.withLock { $0.cooling }
        let done = cooling.filter { !hasFlows($0.value) }
        guard !done.isEmpty else { return }
        state.withLock { state in
            for (slot, aid) in done where state.cooling[slot] == aid && state.byAID[aid] == nil { state.cooling[slot] = nil }
        }
    }

    var isCooling: Bool { state.withLock { !$0.cooling.isEmpty } }
}
