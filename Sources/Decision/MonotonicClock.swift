#if canImport(Glibc)
import Glibc
#endif

/// Milliseconds of CLOCK_MONOTONIC_COARSE: a vDSO read, no syscall, ~4 ms resolution —
/// plenty for flow timeouts, cheap enough to read for every packet a queue thread decides.
public enum MonotonicClock {
    public static func milliseconds() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC_COARSE, &time)
        return UInt64(time.tv_sec) * 1000 + UInt64(time.tv_nsec) / 1_000_000
    }

    /// Microseconds of CLOCK_MONOTONIC (fine-grained, also a vDSO read): for
    /// timing a connection's first verdict, read when a packet (or a batch) is received and
    /// once per new connection.
    public static func microseconds() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return UInt64(time.tv_sec) * 1_000_000 + UInt64(time.tv_nsec) / 1000
    }

    /// Nanoseconds of CLOCK_MONOTONIC: the clock of BPF's bpf_ktime_get_ns (the socket
    /// datapath's records of closed connections).
    public static func nanoseconds() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
    }

    /// Milliseconds from `earlier` to `now`, or 0 when `earlier` is later: threads read the
    /// clock at different moments (a packet batch keeps the time it started with), so a
    /// timestamp written by another thread may be newer than our `now`. Subtracting with
    /// wrap-around would make it look ancient.
    public static func elapsed(since earlier: UInt64, now: UInt64) -> UInt64 {
        now > earlier ? now - earlier : 0
    }
}
