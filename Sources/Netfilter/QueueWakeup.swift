internal import CNetfilterShim
internal import SystemPackage
#if canImport(Glibc)
internal import Glibc
#endif

/// An eventfd another thread signals to wake a queue's thread out of
/// `NetfilterQueue.waitForPacketsOrWakeup`,
/// so work handed to it (a negotiation's answer for a held SYN) is taken at once rather
/// than at the next poll timeout.
public final class QueueWakeup: Sendable {
    private let descriptor: Int32

    init(queue: UInt16) throws(NetfilterError) {
        let descriptor = eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC))
        guard descriptor >= 0 else { throw NetfilterError(.wakeup, queue: queue, errno: .last) }
        self.descriptor = descriptor
    }

    deinit { close(descriptor) }

    var fileDescriptor: Int32 { descriptor }

    /// Wakes the waiting thread (or makes its next wait return at once). Safe from any thread.
    public func signal() {
        var one: UInt64 = 1
        while write(descriptor, &one, 8) < 0, Errno.last == .interrupted {}
    }

    /// Resets the counter after a wait reported the wake-up.
    func clear() {
        var value: UInt64 = 0
        while read(descriptor, &value, 8) < 0, Errno.last == .interrupted {}
    }
}
