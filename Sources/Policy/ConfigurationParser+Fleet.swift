import Packet
import Yams

extension ConfigurationParser {
    static let fleetKeys = ["etcd", "prefix", "name", "network", "virtual-ports", "addresses", "lease", "key-file",
                            "user", "password-file", "tls", "service"]
    static let fleetTLSKeys = ["ca", "cert", "key"]

    /// `fleet:` (docs/fleet.md). Its network joins the cooperative peers as one peer whose
    /// keys come from the directory; the engine then serves negotiations (9901 unless
    /// `cooperative.listen` says otherwise).
    func parseFleet(_ node: Node, virtualPorts: ClosedRange<UInt16>, cooperation: inout Cooperation) throws(ConfigurationError) -> FleetSettings {
        let fields = try fields(of: node, named: "'fleet'", allowed: Self.fleetKeys)
        let etcdNode = try fields.required("etcd", parser: self)
        let etcdItems: [Node] = if case .sequence = etcdNode {
            try sequence(etcdNode, named: "'etcd'", example: "[http://198.18.9.1:2379, http://198.18.9.2:2379]")
        } else { [etcdNode] }
        var endpoints: [String] = []
        for item in etcdItems {
            let text = try scalar(item, named: "'etcd'")
            guard Self.isEndpointURL(text) else {
                throw failure("'etcd' lists etcd's client URLs such as http://198.18.9.1:2379 or https://etcd1.example:2379; found '\(text)'", at: item)
            }
            endpoints.append(text)
        }
        guard !endpoints.isEmpty else { throw failure("'etcd' is empty; list etcd's client URLs such as http://198.18.9.1:2379", at: etcdNode) }

        let networkNode = try fields.required("network", parser: self)
        let networkText = try scalar(networkNode, named: "'network'")
        let network = try value(at: networkNode) { () throws(InvalidValue) in try SourceMatch.parse(networkText) }
        if case .addressPort = network {
            throw failure("the fleet's 'network' is the prefix that holds its hosts, such as 198.18.0.0/16; found '\(networkText)'", at: networkNode)
        }
        if let clash = cooperation.peers.first(where: { $0.network.overlaps(network) }) {
            throw failure("the fleet's network \(network) overlaps the peer \(clash.network) (line \(clash.line)); a host is either a listed peer or a member of the fleet", at: networkNode)
        }
        var settings = FleetSettings(endpoints: endpoints, network: network, virtualPorts: virtualPorts)
        settings.line = line(of: node)
        if let range = fields["virtual-ports"] {
            settings.virtualPorts = try portRange(range, named: "the fleet's 'virtual-ports'")
            guard settings.virtualPorts.contains(virtualPorts.lowerBound), settings.virtualPorts.contains(virtualPorts.upperBound) else {
                throw failure("the fleet's 'virtual-ports' must hold this host's virtual ports \(virtualPorts.lowerBound)-\(virtualPorts.upperBound)", at: range)
            }
        }
        if let prefixNode = fields["prefix"] {
            let text = try scalar(prefixNode, named: "'prefix'")
            guard text.hasPrefix("/"), !text.hasSuffix("/"), text.utf8.count <= 200, !text.contains("//") else {
                throw failure("'prefix' is a key path such as /vpm or /fleets/eu (starts with /, no trailing /); found '\(text)'", at: prefixNode)
            }
            settings.prefix = text
        }
        if let nameNode = fields["name"] {
            let text = try scalar(nameNode, named: "'name'")
            guard FleetSettings.isValidName(text) else {
                throw failure("the fleet 'name' is 1 to 63 letters, digits, '-', '_' or '.' (a host name); found '\(text)'", at: nameNode)
            }
            settings.name = text
        }
        if let addressesNode = fields["addresses"] {
            for item in try sequence(addressesNode, named: "'addresses'", example: "[198.18.1.1, 2001:db8::1]") {
                let text = try scalar(item, named: "'addresses'")
                guard let address = IPAddress(text) else {
                    throw failure("'addresses' lists this host's addresses such as 198.18.1.1; found '\(text)'", at: item)
                }
                guard network.containsAddress(address) else {
                    throw failure("the address \(text) is outside the fleet's network \(network): peers would not treat it as the fleet's", at: item)
                }
                settings.addresses.append(address)
            }
        }
        if let serviceNode = fields["service"] {
            let items: [Node] = if case .sequence = serviceNode {
                try sequence(serviceNode, named: "'service'", example: "[198.18.200.1, 2001:db8::200]")
            } else { [serviceNode] }
            for item in items {
                let text = try scalar(item, named: "'service'")
                guard let address = IPAddress(text) else {
                    throw failure("'service' is an address clients dial, such as 198.18.200.1; found '\(text)'", at: item)
                }
                // The fleet's rules hold connections to its network: a service address must be in it.
                guard network.containsAddress(address) else {
                    throw failure("the service address \(text) is outside the fleet's network \(network): choose an address inside it that no host has", at: item)
                }
                guard !settings.addresses.contains(address) else {
                    throw failure("the service address \(text) is one of this host's fleet addresses: choose an address no host has", at: item)
                }
                settings.services.append(address)
            }
        }
        if let leaseNode = fields["lease"] {
            let text = try scalar(leaseNode, named: "'lease'")
            settings.leaseSeconds = try value(at: leaseNode) { () throws(InvalidValue) in
                let seconds: UInt32
                do throws(InvalidValue) { seconds = try FlowTimeouts.seconds(parsing: text) } catch {
                    throw InvalidValue("'lease': \(error.message)")
                }
                guard (2...3600).contains(seconds) else { throw InvalidValue("'lease' is 2s to 1h; found '\(text)'") }
                return Int(seconds)
            }
        }
        func path(_ key: String, in fields: MappingFields) throws(ConfigurationError) -> String? {
            guard let node = fields[key] else { return nil }
            let text = try scalar(node, named: "'\(key)'")
            guard text.hasPrefix("/") else { throw failure("'\(key)' is an absolute path; found '\(text)'", at: node) }
            return text
        }
        settings.keyFile = try path("key-file", in: fields) ?? settings.keyFile
        if let userNode = fields["user"] { settings.user = try scalar(userNode, named: "'user'") }
        settings.passwordFile = try path("password-file", in: fields)
        if (settings.user == nil) != (settings.passwordFile == nil) {
            throw failure("'user' and 'password-file' go together: etcd's user and the file holding its password", at: node)
        }
        if let tlsNode = fields["tls"] {
            let tls = try self.fields(of: tlsNode, named: "'tls'", allowed: Self.fleetTLSKeys)
            settings.caFile = try path("ca", in: tls)
            settings.certificateFile = try path("cert", in: tls)
            settings.certificateKeyFile = try path("key", in: tls)
            if (settings.certificateFile == nil) != (settings.certificateKeyFile == nil) {
                throw failure("'tls' 'cert' and 'key' go together: this engine's client certificate and its private key", at: tlsNode)
            }
        }
        cooperation.peers.append(Cooperation.Peer(network: network, key: [], virtualPorts: settings.virtualPorts,
                                                  line: settings.line, fromFleet: true))
        if cooperation.listeners.isEmpty { cooperation.listeners = [Cooperation.Listener(port: Cooperation.defaultPort)] }
        return settings
    }

    /// `low-high`, as in `20000-20999`.
    func portRange(_ node: Node, named name: String) throws(ConfigurationError) -> ClosedRange<UInt16> {
        let text = try scalar(node, named: name)
        return try value(at: node) { () throws(InvalidValue) in try PortRange.parse(text[...], named: name) }
    }

    static func isEndpointURL(_ text: String) -> Bool {
        guard text.hasPrefix("http://") || text.hasPrefix("https://") else { return false }
        let rest = text.drop(while: { $0 != "/" }).dropFirst(2)
        return !rest.isEmpty && !rest.contains(" ") && rest.contains(":")
    }
}
