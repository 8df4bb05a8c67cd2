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
}
