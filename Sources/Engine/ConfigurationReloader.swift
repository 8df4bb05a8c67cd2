import Control
import Decision
import FlowTable
import Foundation
import Logging
import Policy
import Synchronization

/// `vpm reload` and SIGHUP: reads the configuration file again and applies what a running
/// engine can change without touching a flow (`Configuration.changes`): the source rules,
/// which the queue threads pick up between batches, and the flow table's timeouts. A file
/// that does not load, or that changes anything else, changes nothing: the engine keeps
/// running as it was and says what to do. Established flows keep their instance either way;
/// new connections follow the new rules.
final class ConfigurationReloader: Sendable {
    /// The configuration the engine runs now, and how many reloads changed it.
    private let state: Mutex<(configuration: Configuration, generation: UInt64)>
    private let published = Atomic<UInt64>(0)
    private let path: String?
    private let store: SharedFlowTable
    private let logger: Logger
    private let notifier: ServiceNotifier
    /// What systemd shows once the reload is over (the engine's ready status).
    private let readyStatus: String
    /// One reload at a time (SIGHUP and `vpm reload` may race).
    private let serial = Mutex(())

    /// Holds the applications in force and their kernel mark slots (a reload may add and
    /// remove applications).
    private let registry: InstanceRegistry

    init(configuration: Configuration, path: String?, store: SharedFlowTable, registry: InstanceRegistry, logger: Logger,
         notifier: ServiceNotifier, readyStatus: String) {
        self.registry = registry
        self.readyStatus = readyStatus
        state = Mutex((configuration, 0))
        self.path = path
        self.store = store
        self.logger = logger
        self.notifier = notifier
    }

    /// Moves on each reload that changed the source rules; queue threads compare it with
    /// theirs after each wait (an atomic load, not per packet).
    var generation: UInt64 { published.load(ordering: .acquiring) }

    var configuration: Configuration { state.withLock { $0.configuration } }

    /// Reloads; returns what changed, or throws why nothing did. `applied` waits until every
    /// queue thread runs the new rules, so a caller told "reloaded" can rely on it.
    func reload(trigger: String, applied: (UInt64) -> Bool) throws(ControlError) -> String {
        try serial.withLock { _ throws(ControlError) -> String in
            guard let path else {
                throw ControlError("this engine was started without a configuration file to read again: restart it")
            }
            notifier.reloading(status: "reloading \(path)")
            defer { notifier.ready(status: readyStatus) }
            let newer: Configuration
            do { newer = try Configuration.load(path: path) } catch {
                logger.error("configuration not reloaded", metadata: ["trigger": "\(trigger)", "reason": "\(error)"])
                throw ControlError("\(path) did not load, nothing changed: \(error)")
            }
            let current = configuration
            let changes = current.changes(to: newer)
            guard changes.needRestart.isEmpty else {
                let keys = changes.needRestart.joined(separator: ", ")
                logger.error("configuration not reloaded", metadata: ["trigger": "\(trigger)", "needs-restart": "\(keys)"])
                throw ControlError("\(path) changes \(keys), which a running engine cannot change; nothing changed. Put them back and reload, or restart the engine (systemctl restart vpm) to apply them")
            }
            guard !changes.reloadable.isEmpty else {
                logger.info("configuration reloaded: nothing changed", metadata: ["trigger": "\(trigger)"])
                return "nothing changed in \(path)"
            }
            // First, so the registry holds the configuration in force: refused when an
            // application it removes still has instances.
            if let refusal = registry.reconfigure(newer) {
                logger.error("configuration not reloaded", metadata: ["trigger": "\(trigger)", "reason": "\(refusal)"])
                throw ControlError("\(path) not reloaded, nothing changed: \(refusal)")
            }
            if changes.reloadable.contains("flows.timeouts") {
                store.withLock { $0.timeouts = newer.timeouts }
            }
            let generation = state.withLock { state in
                state.configuration = newer
                state.generation += 1
                return state.generation
            }
            published.store(generation, ordering: .releasing)
            let deadline = Date().addingTimeInterval(1)
            while !applied(generation) && Date() < deadline { usleep(10_000) }
            logger.notice("configuration reloaded", metadata: [
                "trigger": "\(trigger)", "changed": "\(changes.reloadable.joined(separator: ","))",
                "sources": "\(newer.sources.count)",
            ])
            return "reloaded \(path): \(changes.reloadable.joined(separator: ", ")) changed (established connections keep their instance; new ones follow the new rules)"
        }
    }
}
