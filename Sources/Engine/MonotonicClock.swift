#if canImport(Glibc)
import Glibc
#endif

/// Milliseconds of CLOCK_MONOTONIC_COARSE: a vDSO read, no syscall, ~4 ms resolution —
/// plenty for flow timeouts, cheap enough to read once per batch of packets.
enum MonotonicClock {
    static func milliseconds() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC_COARSE, &time)
        return UInt64(time.tv_sec) * 1000 + UInt64(time.tv_nsec) / 1_000_000
    }
}
