import Packet
public import FlowTable
import Yams

/// Reads configuration text into a `Configuration` and checks everything the engine relies on
/// (ports in range, known AIDs, disjoint sources), so a bad file fails at start-up with the
/// line to fix instead of misrouting connections later.
struct ConfigurationParser {
    static let controlKeys = ["group"]
    static let metricsKeys = ["listen"]
    static let tenantKeys = ["users", "groups", "limit", "ports", "prefix"]
    static let topLevelKeys = ["queue", "queues", "virtual-ports", "ports", "applications", "sources", "flows", "allocation", "cooperative", "control", "metrics", "overload", "fleet", "tenants"]

    let file: String
    let text: String

    func parse() throws(ConfigurationError) -> Configuration {
        guard let root = try compose() else {
            throw ConfigurationError(file: file, line: 1, column: 1, message: "the configuration is empty; it needs at least 'virtual-ports' and 'ports' (docs/configuration.md has an example)")
        }
        let fields = try fields(of: root, named: "the configuration", allowed: Self.topLevelKeys)

        var queue = Configuration.defaultQueue
        if let node = fields["queue"] {
            queue = UInt16(try integer(node, named: "queue", in: 0...65535))
        }
        // nil: `auto`, one per CPU, settled below once local mode is known.
        var chosenQueues: Int?
        if let node = fields["queues"], case let text = try scalar(node, named: "'queues'"), text != "auto" {
            guard DecimalNumber.isDigits(text[...]) else {
                throw failure("'queues' must be auto (one per CPU) or a whole number from 1 to 64, found '\(text)'", at: node)
            }
            let queues = try integer(node, named: "queues", in: 1...64)
            guard Int(queue) + queues - 1 <= 65535 else {
                throw failure("queues \(queue)…\(Int(queue) + queues - 1) run past queue 65535; lower 'queue' or 'queues'", at: node)
            }
            chosenQueues = queues
        }
        let portsNode = try fields.required("ports", parser: self)
        let initialPorts = try parseInitialPorts(portsNode)
        let rangeNode = try fields.required("virtual-ports", parser: self)
        let virtualPorts = try parseVirtualPorts(rangeNode, initialPorts: initialPorts)

        var applications: [Application] = []
        if let node = fields["applications"] {
            applications = try parseApplications(node, initialPorts: initialPorts, virtualPorts: virtualPorts)
        }
        var sources: [SourceRule] = []
        if let node = fields["sources"] {
            sources = try parseSources(node, applications: applications)
        }
        var flowCapacity = Configuration.defaultFlowCapacity
        var timeouts = FlowTimeouts.standard
        if let node = fields["flows"] {
            (flowCapacity, timeouts) = try parseFlows(node)
        }
        var allocation = AllocationPolicy.standard
        if let node = fields["allocation"] {
            allocation = try parseAllocation(node)
        }
        var cooperation = Cooperation.none
        if let node = fields["cooperative"] {
            cooperation = try parseCooperation(node, virtualPorts: virtualPorts)
        }
        let queues = chosenQueues ?? Configuration.automaticQueues(first: queue, local: cooperation.local)
        // Local mode's loopback queue is the one after the others.
        if cooperation.local, Int(queue) + queues > 65535, let node = fields["cooperative"] {
            throw failure("local mode needs queue \(Int(queue) + queues) for loopback, past queue 65535; lower 'queue' or 'queues'", at: node)
        }
        var fleet: FleetSettings?
        if let node = fields["fleet"] {
            fleet = try parseFleet(node, virtualPorts: virtualPorts, cooperation: &cooperation)
        }
        var configuration = Configuration(
            queue: queue,
            virtualPorts: virtualPorts,
            initialPorts: initialPorts,
            applications: applications,
            sources: sources,
            flowCapacity: flowCapacity,
            timeouts: timeouts,
            allocation: allocation,
            cooperation: cooperation
        )
        configuration.queues = queues
        configuration.fleet = fleet
        if let node = fields["control"] {
            let controlFields = try self.fields(of: node, named: "'control'", allowed: Self.controlKeys)
            if let groupNode = controlFields["group"] {
                configuration.control.group = try principal(groupNode, named: "the control group")
            }
        }
        if let node = fields["metrics"] {
            configuration.metrics = try parseMetrics(node)
        }
        if let node = fields["tenants"] {
            configuration.tenants = try parseTenants(node, configuration: configuration)
        }
        if let node = fields["overload"] {
            let text = try scalar(node, named: "'overload'")
            guard let overload = Overload(rawValue: text) else {
                let choices = Overload.allCases.map(\.rawValue).joined(separator: " or ")
                throw failure("'overload' must be \(choices); found '\(text)'", at: node)
            }
            configuration.overload = overload
        }
        return configuration
    }

    /// `metrics: {listen: ADDRESS:PORT}` (IPv6 as `[addr]:port`).
    private func parseMetrics(_ node: Node) throws(ConfigurationError) -> MetricsSettings {
        let fields = try self.fields(of: node, named: "'metrics'", allowed: Self.metricsKeys)
        let listen = try fields.required("listen", parser: self)
        let text = try scalar(listen, named: "'listen'")
        let example = "such as 127.0.0.1:9464 or [::1]:9464"
        let match: SourceMatch
        do { match = try SourceMatch.parse(text) } catch {
            throw failure("metrics 'listen' is an address and a port, \(example); found '\(text)'", at: listen)
        }
        guard case .addressPort(let address, let port) = match, port > 0 else {
            throw failure("metrics 'listen' needs a port as well as an address, \(example); found '\(text)'", at: listen)
        }
        return MetricsSettings(address: address, port: port, line: line(of: listen))
    }

    /// `tenants: {users: [...], groups: [...], limit: 16, ports: [6379, 5353/udp], prefix: tenant}`.
    private func parseTenants(_ node: Node, configuration: Configuration) throws(ConfigurationError) -> TenantSettings {
        let fields = try self.fields(of: node, named: "'tenants'", allowed: Self.tenantKeys)
        guard configuration.cooperation.local else {
            throw failure("'tenants' needs local mode: a tenant's clients reach its instances through it; add cooperative: {local: true}", at: node)
        }
        var settings = TenantSettings(ports: configuration.initialPorts)
        var principals: [String: [String]] = [:]
        for key in ["users", "groups"] {
            guard let listNode = fields[key] else { continue }
            for item in try sequence(listNode, named: "tenants '\(key)'", example: key == "users" ? "[alice, 1001]" : "[ci]") {
                principals[key, default: []].append(try principal(item, named: key == "users" ? "a user of tenants" : "a group of tenants"))
            }
        }
        settings.users = principals["users"] ?? []
        settings.groups = principals["groups"] ?? []
        // Each tenant takes a kernel mark AID slot after the configured applications'.
        let slots = 1023 - configuration.applications.count
        if let limitNode = fields["limit"] {
            settings.limit = try integer(limitNode, named: "limit", in: 1...max(1, slots))
        } else {
            settings.limit = min(settings.limit, slots)
        }
        if let portsNode = fields["ports"] {
            var ports: [InitialPort] = []
            for item in try sequence(portsNode, named: "tenants 'ports'", example: "[6379, 5353/udp]") {
                let port = try initialPort(item)
                guard configuration.initialPorts.contains(port) else {
                    let listed = configuration.initialPorts.map(\.description).joined(separator: ", ")
                    throw failure("tenants port \(port) is not a multiplexed port; list it under 'ports' too (now: \(listed))", at: item)
                }
                if !ports.contains(port) { ports.append(port) }
            }
            guard !ports.isEmpty else {
                throw failure("tenants 'ports' is empty; list the initial ports tenants may use, or leave it out for all of 'ports'", at: portsNode)
            }
            settings.ports = ports
        }
        if let prefixNode = fields["prefix"] {
            let prefix = try scalar(prefixNode, named: "'prefix'")
            if let problem = AID.problem(with: prefix + "-00000000") {
                throw failure("tenants 'prefix' '\(prefix)' does not make an AID: \(problem)", at: prefixNode)
            }
            settings.prefix = prefix
        }
        if let clash = configuration.applications.first(where: { $0.aid.name.hasPrefix(settings.prefix + "-") }) {
            throw failure("application '\(clash.aid)' starts with the tenants' prefix '\(settings.prefix)-'; choose another 'prefix' under tenants", at: node)
        }
        return settings
    }

    private func parseInitialPorts(_ node: Node) throws(ConfigurationError) -> [InitialPort] {
        let items = try sequence(node, named: "ports", example: "[9000, 5353/udp]")
        guard !items.isEmpty else {
            throw failure("'ports' is empty; list at least one initial port to multiplex, such as 9000 or 5353/udp", at: node)
        }
        var lines: [InitialPort: Int] = [:]
        var ports: [InitialPort] = []
        for item in items {
            let port = try initialPort(item)
            if let line = lines[port] {
                throw failure("initial port \(port) is listed twice in 'ports' (first at line \(line))", at: item)
            }
            lines[port] = line(of: item)
            ports.append(port)
        }
        return ports
    }

    private func parseVirtualPorts(_ node: Node, initialPorts: [InitialPort]) throws(ConfigurationError) -> ClosedRange<UInt16> {
        let text = try scalar(node, named: "'virtual-ports'")
        let range = try value(at: node) { () throws(InvalidValue) in try PortRange.parse(text[...], named: "'virtual-ports'") }
        if let clash = initialPorts.first(where: { range.contains($0.port) }) {
            throw failure("'virtual-ports' \(text) contains the initial port \(clash); choose a range that leaves the multiplexed ports out", at: node)
        }
        return range
    }

    /// "9000", "9000/tcp" or "5353/udp" (a YAML integer or text).
    func initialPort(_ node: Node) throws(ConfigurationError) -> InitialPort {
        let text = try scalar(node, named: "an initial port")
        return try value(at: node) { () throws(InvalidValue) in try InitialPort.parse(text) }
    }

    /// A user or group: a name as the system spells them, or a numeric id.
    func principal(_ node: Node, named name: String) throws(ConfigurationError) -> String {
        let text = try scalar(node, named: name)
        let allowed = text.utf8.allSatisfy { byte in
            (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
                || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
                || byte == UInt8(ascii: ".")
        }
        guard !text.isEmpty, text.utf8.count <= 32, allowed, !text.hasPrefix("-") else {
            throw failure("\(name) '\(text)' is not a user or group name (letters, digits, _ - .; at most 32) nor a numeric id", at: node)
        }
        return text
    }

    func aid(_ node: Node) throws(ConfigurationError) -> AID {
        let text = try scalar(node, named: "an AID")
        guard let aid = AID(text) else {
            throw failure(AID.problem(with: text) ?? "'\(text)' is not an AID", at: node)
        }
        return aid
    }

    /// Yams's parse, with its errors turned into ours at the same line and column.
    private func compose() throws(ConfigurationError) -> Node? {
        do {
            return try Yams.compose(yaml: text, .default, .default, .utf8)
        } catch let error as YamlError {
            throw translate(error)
        } catch {
            throw ConfigurationError(file: file, message: "cannot parse the configuration: \(error)")
        }
    }
}
