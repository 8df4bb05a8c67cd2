import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// SIGINT and SIGTERM ask the queue loop to stop; the loop polls with a short timeout,
/// so it notices within one poll interval and can remove its rules before exiting.
public enum StopSignal {
    private static let requested = Atomic<Bool>(false)

    public static var isRequested: Bool { requested.load(ordering: .relaxed) }

    public static func install() {
        for number in [SIGINT, SIGTERM] {
            signal(number) { _ in StopSignal.requested.store(true, ordering: .relaxed) }
        }
    }

    /// Stops the engine as a signal would (a queue thread failed: the others follow).
    static func request() { requested.store(true, ordering: .relaxed) }
}

/// SIGHUP asks the engine to re-read its configuration file (`vpm reload` asks over the
/// control socket); the engine's main thread looks for it every 100 ms.
enum ReloadSignal {
    private static let requested = Atomic<Bool>(false)

    static func install() {
        signal(SIGHUP) { _ in ReloadSignal.requested.store(true, ordering: .relaxed) }
    }

    /// Whether SIGHUP came since the last call.
    static func take() -> Bool { requested.exchange(false, ordering: .relaxed) }
}
