/// What a client asks the engine over the control socket: one JSON object per line.
/// `vpm flows`/`stats`/`apps` send only a command; `vpm exec`'s supervisor (the Interception
/// module) sends `bind` and `connect` for the program it runs.
public struct ControlRequest: Codable, Sendable, Equatable {
    public enum Command: String, Codable, Sendable {
        case flows, stats, apps, bind, connect
        /// The flow table's events as they happen: the connection stays open (`vpm flows --watch`).
        case watch
        /// Read the configuration file again and apply what can change while running (`vpm reload`).
        case reload
        /// A new key pair for the engine's fleet membership (`vpm rotate-key`, docs/fleet.md).
        case rotateKey = "rotate-key"
        /// Make a tenant (no `aid`: `vpm exec --new-aid`) or join one (`aid`), held by the
        /// asking process until it exits (docs/instances.md).
        case tenant
    }
    public var command: Command
    /// bind, connect: the AID of the calling program.
    public var aid: String?
    /// bind: the initial port the program asked for.
    public var initialPort: UInt16?
    /// bind, connect: "tcp" or "udp".
    public var transport: String?
    /// connect: the program's socket and where it connects.
    public var localAddress: String?
    public var localPort: UInt16?
    public var remoteAddress: String?
    public var remotePort: UInt16?
    /// bind: the program's process, when the peer (`vpm exec`'s supervisor) is not the
    /// program itself; shown by `vpm apps`.
    public var pid: Int32?
    /// flows: answer a piece of the table per line (each but the last with `more`), so a
    /// table of any size travels without being built whole (`vpm flows` asks for this).
    /// Absent: the whole table in one line, as before.
    public var pieces: Bool?
    /// apps: every instance of the fleet, from the engine's view of its directory
    /// (`vpm apps --fleet`), instead of this host's.
    public var fleet: Bool?

    public init(_ command: Command) { self.command = command }

    /// Whether the engine answers with a stream of lines (a watch, the flows in pieces)
    /// rather than one line.
    public var isStreamed: Bool { command == .watch || (command == .flows && pieces == true) }
}

/// The engine's answer: one JSON object per line, then the engine closes the connection.
public struct ControlResponse: Codable, Sendable, Equatable {
    public var flows: [FlowRecord]?
    public var statistics: EngineStatistics?
    public var applications: [AppRecord]?
    /// bind: the virtual port the program's socket is really bound to.
    public var virtualPort: UInt16?
    public var error: String?
    /// reload: what changed.
    public var message: String?
    /// With `error`, for the interception layer: the errno to give the program (EADDRINUSE ...).
    public var errorCode: String?
    /// watch: the events since the previous line, in order (the first line has none: the
    /// watch has started).
    public var events: [FlowEventRecord]?
    /// watch: events that happened before these but were not kept for this watcher (it fell
    /// behind the engine's event ring).
    public var lost: UInt64?
    /// flows in pieces: more lines follow this one.
    public var more: Bool?
    /// apps with `fleet`: every instance the fleet's directory lists, and the fleet's state.
    public var fleetInstances: [FleetInstanceRecord]?
    public var fleet: FleetRecord?
    /// tenant: the tenant's AID.
    public var aid: String?

    public init(flows: [FlowRecord]? = nil, statistics: EngineStatistics? = nil, applications: [AppRecord]? = nil,
                virtualPort: UInt16? = nil, error: String? = nil, errorCode: String? = nil,
                events: [FlowEventRecord]? = nil, lost: UInt64? = nil, message: String? = nil, more: Bool = false) {
        self.more = more ? true : nil
        self.message = message
        self.flows = flows
        self.statistics = statistics
        self.applications = applications
        self.virtualPort = virtualPort
        self.error = error
        self.errorCode = errorCode
        self.events = events
        self.lost = lost
    }
}

/// One event of the flow table, as `vpm flows --watch` prints it.
public struct FlowEventRecord: Codable, Sendable, Equatable {
    /// "new", "update" or "destroy".
    public var event: String
    /// Numbers the engine's events without gaps (a gap is what `lost` counted).
    public var sequence: UInt64
    /// The flow when it happened.
    public var flow: FlowRecord

    public init(event: String, sequence: UInt64, flow: FlowRecord) {
        self.event = event
        self.sequence = sequence
        self.flow = flow
    }
}

/// One instance as `vpm apps` shows it.
public struct AppRecord: Codable, Sendable, Equatable {
    public struct Process: Codable, Sendable, Equatable {
        public var pid: Int32
        public var command: String
        public init(pid: Int32, command: String) {
            self.pid = pid
            self.command = command
        }
    }

    public var aid: String
    public var transport: String
    public var initialPort: UInt16
    public var virtualPort: UInt16
    /// "config" for instances the configuration names, "exec" for those `vpm exec` registered.
    public var origin: String
    public var processes: [Process]
    /// Flows in the flow table that go to this instance.
    public var connections: Int
    /// True while the instance drains: its listening sockets are closed, connections it
    /// accepted still run and keep their translation, new ones are not routed to it.
    /// Absent otherwise.
    public var draining: Bool?

    public init(aid: String, transport: String, initialPort: UInt16, virtualPort: UInt16, origin: String,
                processes: [Process], connections: Int, draining: Bool = false) {
        self.draining = draining ? true : nil
        self.aid = aid
        self.transport = transport
        self.initialPort = initialPort
        self.virtualPort = virtualPort
        self.origin = origin
        self.processes = processes
        self.connections = connections
    }
}
