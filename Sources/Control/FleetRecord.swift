/// A fleet member's state for `vpm stats` (docs/fleet.md): whether etcd answers, and what
/// the engine knows of the fleet — its last view when etcd does not.
public struct FleetRecord: Codable, Sendable, Equatable {
    public var name: String
    public var connected: Bool
    /// Unix seconds since when etcd has been unreachable; nil while it answers.
    public var lostSince: Int64?
    public var lastError: String?
    /// Why it is not connected: "unreachable", "refused" (the user, password or a
    /// permission) or "name-taken"; nil while connected.
    public var trouble: String?
    /// Engines and instances in the view (this engine's own included), and entries left out.
    public var engines: Int
    public var instances: Int
    public var ignored: Int
    /// The etcd revision the view is at.
    public var revision: Int64

    public init(name: String, connected: Bool, lostSince: Int64? = nil, lastError: String? = nil, trouble: String? = nil,
                engines: Int, instances: Int, ignored: Int, revision: Int64) {
        self.name = name
        self.connected = connected
        self.lostSince = lostSince
        self.lastError = lastError
        self.trouble = trouble
        self.engines = engines
        self.instances = instances
        self.ignored = ignored
        self.revision = revision
    }

    /// One line for `vpm stats`, measured against `now` (Unix seconds).
    public func summary(now: Int64) -> String {
        let view = "\(engines) engine\(engines == 1 ? "" : "s"), \(instances) instance\(instances == 1 ? "" : "s")"
            + (ignored > 0 ? ", \(ignored) entr\(ignored == 1 ? "y" : "ies") ignored (see the log)" : "")
        if connected { return "\(name): etcd connected, \(view) (revision \(revision))" }
        let since = lostSince.map { " for \(max(0, now - $0)) s" } ?? ""
        let condition = switch trouble {
        case "refused": "etcd REFUSED this engine"
        case "name-taken": "NAME TAKEN by another engine"
        default: "etcd UNREACHABLE"
        }
        return "\(name): \(condition)\(since) (\(lastError ?? "no answer")); using the last view: \(view)"
    }
}

/// One instance of the fleet as `vpm apps --fleet` shows it: where it runs and what it serves.
public struct FleetInstanceRecord: Codable, Sendable, Equatable, Comparable {
    public var engine: String
    /// The engine's published addresses.
    public var addresses: [String]
    public var aid: String
    public var initialPort: UInt16
    public var transport: String

    public init(engine: String, addresses: [String], aid: String, initialPort: UInt16, transport: String) {
        self.engine = engine
        self.addresses = addresses
        self.aid = aid
        self.initialPort = initialPort
        self.transport = transport
    }

    public static func < (one: FleetInstanceRecord, other: FleetInstanceRecord) -> Bool {
        (one.aid, one.initialPort, one.transport, one.engine) < (other.aid, other.initialPort, other.transport, other.engine)
    }

    /// Aligned columns for people: one instance per line, by AID.
    public static func table(_ records: [FleetInstanceRecord]) -> String {
        alignedTable([["AID", "PORT", "ENGINE", "ADDRESSES"]]
                     + records.sorted().map { ["\($0.aid)", "\($0.initialPort)/\($0.transport)", $0.engine, $0.addresses.joined(separator: ",")] })
    }
}
