@_exported public import FlowTable
public import Packet
import Foundation

/// What vpm multiplexes and for whom: the queue, the initial ports, the virtual port range,
/// the applications (AIDs) with their instances, and which client sources belong to which AID.
/// `parse` and `load` return only configurations that passed every check in
/// docs/configuration.md; a value built in code is taken as given.
public struct Configuration: Sendable {
    public static let defaultQueue: UInt16 = 0
    public static let defaultFlowCapacity = 262_144

    /// The NFQUEUE number the engine binds (the first, with several queues).
    public var queue: UInt16
    /// How many queues, `queue` … `queue + queues - 1`, each with its own thread; the rules
    /// spread flows over them by their client port (`RuleSet.QueueTargets`). A configuration
    /// file's default is `automaticQueues`; one built in code has one queue unless told.
    public var queues: Int = 1
    /// `queues: auto`: one queue per CPU this process may run on, rounded down to a power of
    /// two (the rules split flows into a power of two of buckets, `RuleSet.QueueTargets`, and
    /// any other count would load some queues twice as much as others), at most 64, and no
    /// queue number past 65535 (local mode needs one more, for loopback).
    public static func automaticQueues(first: UInt16, local: Bool,
                                       processors: Int? = nil) -> Int {
        let available = processors ?? ProcessInfo.processInfo.activeProcessorCount
        return largestPowerOfTwo(atMost: min(64, available, 65536 - Int(first) - (local ? 1 : 0)))
    }

    /// The largest power of two that is at most `limit` (1 when `limit` is below 2).
    public static func largestPowerOfTwo(atMost limit: Int) -> Int {
        var value = 1
        while value * 2 <= limit { value *= 2 }
        return value
    }
    /// Local mode on the userspace datapath: loopback's packets go to a queue of their own,
    /// the one after the others, bound without GSO (see `RuleSet.everyPacket`).
    public var loopbackQueue: UInt16? {
        cooperation.local && Int(queue) + queues <= 65535 ? queue + UInt16(queues) : nil
    }
    /// Where virtual ports come from; never overlaps an initial port.
    public var virtualPorts: ClosedRange<UInt16>
    /// The multiplexed ports, in file order, without duplicates.
    public var initialPorts: [InitialPort]
    /// In file order; AIDs are unique.
    public var applications: [Application]
    /// In file order; disjoint, so a client matches at most one.
    public var sources: [SourceRule]
    /// The most flows the flow table holds at once.
    public var flowCapacity: Int
    public var timeouts: FlowTimeouts
    /// What a `vpm exec` bind gets when the virtual port range is exhausted.
    public var allocation: AllocationPolicy
    /// Cooperative peers and local mode.
    public var cooperation: Cooperation
    /// Who may use the control socket beyond root.
    public var control: ControlAccess = .rootOnly
    /// Where the engine serves its metrics; nil: no endpoint.
    public var metrics: MetricsSettings?
    /// The etcd directory of engines and instances; nil: no fleet.
    public var fleet: FleetSettings?
    /// Tenants on demand (`vpm exec --new-aid`); nil: none may be made.
    public var tenants: TenantSettings?
    /// What the kernel does with packets when the queue is full.
    public var overload: Overload = .failClosed

    public init(
        queue: UInt16 = Configuration.defaultQueue,
        virtualPorts: ClosedRange<UInt16>,
        initialPorts: [InitialPort],
        applications: [Application] = [],
        sources: [SourceRule] = [],
        flowCapacity: Int = Configuration.defaultFlowCapacity,
        timeouts: FlowTimeouts = .standard,
        allocation: AllocationPolicy = .standard,
        cooperation: Cooperation = .none
    ) {
        self.queue = queue
        self.virtualPorts = virtualPorts
        self.initialPorts = initialPorts
        self.applications = applications
        self.sources = sources
        self.flowCapacity = flowCapacity
        self.timeouts = timeouts
        self.allocation = allocation
        self.cooperation = cooperation
    }

    /// The application whose `executables` list `path` (an absolute, resolved path).
    public func application(executable path: String) -> Application? {
        applications.first { $0.executables.contains(path) }
    }

    /// Every instance of every application, in file order.
    public var instances: [Instance] {
        applications.flatMap(\.instances)
    }

    public func application(_ aid: AID) -> Application? {
        applications.first { $0.aid == aid }
    }

    /// The instance a client of `aid` reaches when it dials `initialPort`, if there is one.
    // A linear scan: configurations hold tens of instances, and the engine keeps its own
    // table of live translations rather than asking here per packet.
    public func instance(aid: AID, initialPort: InitialPort) -> Instance? {
        application(aid)?.instance(initialPort: initialPort)
    }

    /// The instance that really listens on `virtualPort` for `transport`, if there is one.
    public func instance(virtualPort: UInt16, transport: TransportProtocol) -> Instance? {
        for application in applications {
            for instance in application.instances where instance.virtualPort == virtualPort && instance.transport == transport {
                return instance
            }
        }
        return nil
    }

    /// A matcher for `sources`, built once and used per new connection.
    public func makeSourceMatcher() -> SourceMatcher {
        SourceMatcher(sources)
    }
}
