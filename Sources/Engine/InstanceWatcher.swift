import Decision
import Foundation
import Logging
import Packet
import Synchronization

/// Once a second, off the queue thread: reads /proc/net for the sockets on the virtual
/// ports and releases the ports of `vpm exec` instances that have none left, together with
/// their flows (a later instance that gets the same port must not inherit them). The queue
/// thread notices through the registry's generation.
final class InstanceWatcher: Sendable {
    private let registry: InstanceRegistry
    private let store: SharedFlowTable
    private let logger: Logger
    private let stopping = Atomic<Bool>(false)
    private let finished = DispatchSemaphore(value: 0)

    init(registry: InstanceRegistry, store: SharedFlowTable, logger: Logger) {
        self.registry = registry
        self.store = store
        self.logger = logger
    }

    func start() {
        let thread = Thread { [self] in
            while !stopping.load(ordering: .relaxed) {
                check()
                for _ in 0..<10 where !stopping.load(ordering: .relaxed) { usleep(100_000) }
            }
            finished.signal()
        }
        thread.name = "vpm-instances"
        thread.start()
    }

    func stop() {
        stopping.store(true, ordering: .relaxed)
        finished.wait()
    }

    private func check() {
        let release = registry.releaseUnused(sockets: SocketTable.read(), now: MonotonicClock.milliseconds())
        for entry in release.startedDraining {
            logger.info("instance stopped listening, draining its connections", metadata: [
                "aid": "\(entry.aid)", "port": "\(entry.initialPort)/\(entry.transport)", "virtual-port": "\(entry.virtualPort)",
            ])
        }
        for entry in release.released {
            let flows = store.removeFlows(toVirtualPort: entry.virtualPort, transport: entry.transport)
            logger.info("instance gone, virtual port released", metadata: [
                "aid": "\(entry.aid)", "port": "\(entry.initialPort)/\(entry.transport)",
                "virtual-port": "\(entry.virtualPort)", "flows-removed": "\(flows)",
            ])
        }
    }
}
