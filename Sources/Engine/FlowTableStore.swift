public import FlowTable
import Synchronization

/// The flow table behind a lock: the queue thread updates it per packet, the control
/// thread snapshots it. The lock is held only around table calls, never across a syscall.
public final class FlowTableStore: Sendable {
    private let mutex: Mutex<FlowTable>

    public init(_ table: sending FlowTable) {
        mutex = Mutex(table)
    }

    public func withLock<Result: ~Copyable>(_ body: (FlowTable) throws -> sending Result) rethrows -> sending Result {
        try mutex.withLock { table in try body(table) }
    }
}
