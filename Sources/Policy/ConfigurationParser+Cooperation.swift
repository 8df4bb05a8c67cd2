import Packet
import FlowTable
import Yams

extension ConfigurationParser {
    static let cooperationKeys = ["listen", "timeout", "peers", "local"]
    static let peerKeys = ["network", "engine-port", "key", "virtual-ports"]

    func parseCooperation(_ node: Node, virtualPorts: ClosedRange<UInt16>) throws(ConfigurationError) -> Cooperation {
        let fields = try fields(of: node, named: "'cooperative'", allowed: Self.cooperationKeys)
        var cooperation = Cooperation()
        if let listen = fields["listen"] {
            cooperation.listeners = try parseListeners(listen)
        }
        if let timeout = fields["timeout"] {
            let text = try scalar(timeout, named: "'timeout'")
            cooperation.timeoutMilliseconds = try value(at: timeout) { () throws(InvalidValue) in
                if text.hasSuffix("ms"), let value = UInt32(text.dropLast(2)), value > 0 { return value }
                do throws(InvalidValue) {
                    return try FlowTimeouts.seconds(parsing: text) * 1000
                } catch {
                    throw InvalidValue("'timeout': \(error.message) (or milliseconds such as 500ms)")
                }
            }
        }
        if let local = fields["local"] {
            let text = try scalar(local, named: "'local'")
            guard let flag = Bool(text) else { throw failure("'local' must be true or false; found '\(text)'", at: local) }
            cooperation.local = flag
        }
        if let peersNode = fields["peers"] {
            for item in try sequence(peersNode, named: "'peers'", example: "[{network: 198.18.0.0/24, key: <64 hex digits>}]") {
                cooperation.peers.append(try parsePeer(item, virtualPorts: virtualPorts, earlier: cooperation.peers))
            }
        }
        return cooperation
    }

    /// `listen: 9901` (every address, both families), `listen: ADDRESS:PORT` (IPv6 as
    /// `"[addr]:port"`), or a list of those.
    private func parseListeners(_ node: Node) throws(ConfigurationError) -> [Cooperation.Listener] {
        let items: [Node]
        if case .sequence = node {
            items = try sequence(node, named: "'listen'", example: "[198.18.0.1:9901, \"[2001:db8::1]:9901\"]")
            guard !items.isEmpty else {
                throw failure("'listen' is empty; give a port (9901: every address) or addresses such as 198.18.0.1:9901", at: node)
            }
        } else {
            items = [node]
        }
        var listeners: [Cooperation.Listener] = []
        for item in items {
            guard case .scalar = item else {
                throw failure("'listen' entries are ports or ADDRESS:PORT; quote IPv6 ones, as in \"[2001:db8::1]:9901\" (YAML reads an unquoted [ as a list)", at: item)
            }
            let text = try scalar(item, named: "'listen'")
            let example = "a port such as 9901 (every address, both families) or ADDRESS:PORT such as 198.18.0.1:9901 or \"[2001:db8::1]:9901\""
            let listener: Cooperation.Listener
            if let port = UInt16(text), port > 0 {
                listener = Cooperation.Listener(port: port)
            } else if case .addressPort(let address, let port)? = try? SourceMatch.parse(text), port > 0 {
                listener = Cooperation.Listener(address: address, port: port)
            } else {
                throw failure("'listen' is \(example); found '\(text)'", at: item)
            }
            if let clash = listeners.first(where: { $0.port == listener.port && ($0.address == nil || listener.address == nil || $0.address == listener.address) }) {
                throw failure("'listen' names \(listener) twice (\(clash) covers it); list each address once", at: item)
            }
            listeners.append(listener)
        }
        return listeners
    }

    private func parsePeer(_ node: Node, virtualPorts: ClosedRange<UInt16>, earlier: [Cooperation.Peer]) throws(ConfigurationError) -> Cooperation.Peer {
        let fields = try fields(of: node, named: "a peer", allowed: Self.peerKeys)
        let networkNode = try fields.required("network", parser: self)
        let text = try scalar(networkNode, named: "'network'")
        let network = try value(at: networkNode) { () throws(InvalidValue) in try SourceMatch.parse(text) }
        if case .addressPort = network {
            throw failure("a peer 'network' is an address or a prefix, not address:port; found '\(text)'", at: networkNode)
        }
        if let clash = earlier.first(where: { $0.network.overlaps(network) }) {
            throw failure("peer network \(network) overlaps \(clash.network) (line \(clash.line)); each remote host has one peer entry", at: networkNode)
        }
        let keyNode = try fields.required("key", parser: self)
        let keyText = try scalar(keyNode, named: "'key'")
        guard let key = Hex.bytes(keyText), key.count == 32 else {
            throw failure("'key' must be 64 hex digits (32 random bytes, e.g. from `openssl rand -hex 32`); found \(keyText.count) characters", at: keyNode)
        }
        var peer = Cooperation.Peer(network: network, key: key, virtualPorts: virtualPorts, line: line(of: networkNode))
        if let port = fields["engine-port"] {
            peer.enginePort = UInt16(try integer(port, named: "'engine-port'", in: 1...65535))
        }
        if let range = fields["virtual-ports"] {
            peer.virtualPorts = try portRange(range, named: "a peer's 'virtual-ports'")
        }
        return peer
    }
}
