/// What a running engine can take from a newer version of its configuration file
/// (`vpm reload`, SIGHUP; docs/operations.md): which client sources belong to which AID, the
/// flows' idle timeouts, and applications added, removed or given other users (not their
/// static `instances:`). Everything else shapes the rules, the queues or the sockets the
/// engine holds, and needs a restart.
public struct ConfigurationChanges: Sendable, Equatable {
    /// Keys whose change takes effect at once (`sources`, `flows.timeouts`, `applications`).
    public var reloadable: [String] = []
    /// Keys that changed but need a restart (`ports`, `applications`, …), in file order.
    public var needRestart: [String] = []

    public init(reloadable: [String] = [], needRestart: [String] = []) {
        self.reloadable = reloadable
        self.needRestart = needRestart
    }

    public var isEmpty: Bool { reloadable.isEmpty && needRestart.isEmpty }
}

extension Configuration {
    /// How `newer` differs from this configuration, key by key (line numbers aside).
    public func changes(to newer: Configuration) -> ConfigurationChanges {
        var changes = ConfigurationChanges()
        func restart(_ key: String, _ differs: Bool) { if differs { changes.needRestart.append(key) } }
        restart("queue", queue != newer.queue)
        restart("queues", queues != newer.queues)
        restart("virtual-ports", virtualPorts != newer.virtualPorts)
        restart("ports", initialPorts != newer.initialPorts)
        if applications != newer.applications {
            // Applications come and go (and their users, groups and executables change) while
            // running; an instance the file states (a static virtual port) needs a restart.
            if Set(instances) == Set(newer.instances) { changes.reloadable.append("applications") } else { changes.needRestart.append("applications") }
        }
        if !Self.sameSources(sources, newer.sources) { changes.reloadable.append("sources") }
        restart("flows.capacity", flowCapacity != newer.flowCapacity)
        if timeouts != newer.timeouts { changes.reloadable.append("flows.timeouts") }
        restart("allocation", allocation != newer.allocation)
        restart("control", control != newer.control)
        restart("metrics", metrics?.endpoint != newer.metrics?.endpoint)
        restart("overload", overload != newer.overload)
        restart("tenants", tenants != newer.tenants)
        restart("cooperative", !Self.sameCooperation(cooperation, newer.cooperation))
        restart("fleet", fleet.map { var one = $0; one.line = 0; return one } != newer.fleet.map { var one = $0; one.line = 0; return one })
        return changes
    }

    private static func sameSources(_ one: [SourceRule], _ other: [SourceRule]) -> Bool {
        one.count == other.count && zip(one, other).allSatisfy { $0.match == $1.match && $0.aid == $1.aid }
    }

    private static func sameCooperation(_ one: Cooperation, _ other: Cooperation) -> Bool {
        var one = one, other = other
        for index in one.peers.indices { one.peers[index].line = 0 }
        for index in other.peers.indices { other.peers[index].line = 0 }
        return one == other
    }
}
