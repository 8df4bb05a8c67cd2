import Decision
import Logging
import Synchronization

/// Keeps a log line that strangers can trigger (a rejected negotiation from anyone who
/// reaches the port, a refused control request, a refused cooperative connection) from
/// filling a disk under a flood: a token bucket per call site, `burst` lines at once and
/// `perSecond` after that. The next line let through says how many were suppressed.
final class LogLimiter: Sendable {
    private struct State {
        var tokens: Double
        var last: UInt64
        var suppressed: UInt64 = 0
    }

    private let state: Mutex<State>
    private let burst: Double
    private let perSecond: Double

    init(burst: Int = 20, perSecond: Double = 2) {
        self.burst = Double(burst)
        self.perSecond = perSecond
        state = Mutex(State(tokens: Double(burst), last: MonotonicClock.milliseconds()))
    }

    /// Whether a line may be written at `now` (milliseconds); if so, how many were
    /// suppressed since the last one that was.
    func admit(now: UInt64 = MonotonicClock.milliseconds()) -> UInt64? {
        state.withLock { state in
            let elapsed = Double(MonotonicClock.elapsed(since: state.last, now: now)) / 1000
            state.tokens = min(burst, state.tokens + elapsed * perSecond)
            state.last = max(state.last, now)
            guard state.tokens >= 1 else {
                state.suppressed += 1
                return nil
            }
            state.tokens -= 1
            defer { state.suppressed = 0 }
            return state.suppressed
        }
    }
}

extension Logger {
    /// Logs through `limiter`: dropped when over its rate, else with `suppressed=N` when
    /// lines were dropped before it.
    func log(limitedBy limiter: LogLimiter, level: Logger.Level, _ message: @autoclosure () -> Logger.Message,
             metadata: @autoclosure () -> Logger.Metadata) {
        guard logLevel <= level, let suppressed = limiter.admit() else { return }
        var metadata = metadata()
        if suppressed > 0 { metadata["suppressed"] = "\(suppressed)" }
        log(level: level, message(), metadata: metadata)
    }
}
