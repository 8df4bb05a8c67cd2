import NIOCore
import Synchronization

/// The client's counters and the negotiations in flight.
final class NegotiationRegistry: Sendable {
    struct State {
        var statistics = NegotiationClientStatistics()
        var inFlight: [ObjectIdentifier: PendingNegotiation] = [:]
        var stopped = false
    }

    let state = Mutex(State())

    func finished(_ negotiation: PendingNegotiation, _ outcome: NegotiationClient.Outcome) {
        state.withLock { state in
            state.inFlight[ObjectIdentifier(negotiation)] = nil
            switch outcome {
            case .accepted:
                state.statistics.answered += 1
                state.statistics.accepted += 1
            case .refused:
                state.statistics.answered += 1
                state.statistics.refused += 1
            case .timedOut: state.statistics.timedOut += 1
            case .unreachable: state.statistics.unreachable += 1
            case .badAnswer: state.statistics.badAnswer += 1
            }
        }
    }

    /// Refuses new negotiations and ends those in flight.
    func stopAll() {
        let pending = state.withLock { state -> [PendingNegotiation] in
            state.stopped = true
            return Array(state.inFlight.values)
        }
        for negotiation in pending {
            negotiation.finish(.failed(reason: "the negotiation client stopped"), .badAnswer)
        }
    }
}

/// One negotiation in flight: its completion (called once), deadline and channel.
final class PendingNegotiation: Sendable {
    let endpoint: String
    private let registry: NegotiationRegistry

    private struct State {
        var completion: (@Sendable (NegotiationAnswer) -> Void)?
        var deadline: Scheduled<Void>?
        var channel: (any Channel)?
    }

    private let state: Mutex<State>

    init(registry: NegotiationRegistry, endpoint: String, completion: @escaping @Sendable (NegotiationAnswer) -> Void) {
        self.registry = registry
        self.endpoint = endpoint
        state = Mutex(State(completion: completion))
    }

    func setDeadline(_ deadline: Scheduled<Void>) {
        let finished = state.withLock { state -> Bool in
            if state.completion == nil { return true }
            state.deadline = deadline
            return false
        }
        if finished { deadline.cancel() }
    }

    /// Keeps the connected channel so the deadline can close it; closes it at once when
    /// the negotiation already ended (timed out while connecting).
    func attach(_ channel: any Channel) {
        let finished = state.withLock { state -> Bool in
            if state.completion == nil { return true }
            state.channel = channel
            return false
        }
        if finished { channel.close(promise: nil) }
    }

    /// The first call wins: counts the outcome, cancels the deadline, closes the channel
    /// and calls the completion. Later calls do nothing.
    func finish(_ answer: NegotiationAnswer, _ outcome: NegotiationClient.Outcome) {
        let taken = state.withLock { state -> State? in
            guard state.completion != nil else { return nil }
            defer { state = State() }
            return state
        }
        guard let taken, let completion = taken.completion else { return }
        registry.finished(self, outcome)
        taken.deadline?.cancel()
        taken.channel?.close(promise: nil)
        completion(answer)
    }
}
