public import FlowTable
public import Packet

/// Cooperative and local modes: which remote networks run vpm engines we negotiate with,
/// the key each shares with us, and whether local clients are routed by their AID.
public struct Cooperation: Sendable, Equatable {
    public struct Peer: Sendable, Equatable {
        /// The remote hosts (a CIDR prefix or one address) whose engines we negotiate with.
        public var network: SourceMatch
        /// Their negotiation port.
        public var enginePort: UInt16
        /// The shared HMAC-SHA256 key (32 bytes).
        public var key: [UInt8]
        /// Their virtual port range: what their instances' replies come from.
        public var virtualPorts: ClosedRange<UInt16>
        public var line: Int
        /// The fleet's network (`fleet:`): each host's engine port and key come from the
        /// directory, not from this entry (whose key is empty).
        public var fromFleet: Bool

        public init(network: SourceMatch, enginePort: UInt16 = Cooperation.defaultPort, key: [UInt8], virtualPorts: ClosedRange<UInt16>,
                    line: Int = 0, fromFleet: Bool = false) {
            self.fromFleet = fromFleet
            self.network = network
            self.enginePort = enginePort
            self.key = key
            self.virtualPorts = virtualPorts
            self.line = line
        }

        /// The IPv4 or IPv6 prefix as iptables writes it (`198.18.0.0/24`).
        public var iptablesNetwork: String {
            switch network {
            case .prefix(let address, let length): "\(address)/\(address.isIPv4 ? length - 96 : length)"
            case .address(let address), .addressPort(let address, _): "\(address)"
            }
        }

        public var isIPv4: Bool {
            switch network {
            case .prefix(let address, _), .address(let address), .addressPort(let address, _): address.isIPv4
            }
        }
    }

    /// The negotiation port: a peer's, unless its `engine-port` says otherwise.
    public static let defaultPort: UInt16 = 9901

    /// Where the negotiation server listens: an address and a TCP port, or (`address` nil)
    /// every address of both families on the port.
    public struct Listener: Sendable, Equatable, CustomStringConvertible {
        public var address: IPAddress?
        public var port: UInt16

        public init(address: IPAddress? = nil, port: UInt16) {
            self.address = address
            self.port = port
        }

        /// "198.18.0.1:9901", "[2001:db8::1]:9901", or "*:9901" for every address.
        public var description: String { address.map { $0.endpoint(port) } ?? "*:\(port)" }
    }

    /// Serve negotiations from peers here; empty: do not serve.
    public var listeners: [Listener]
    /// How long a client-side negotiation may take before the connection is refused.
    public var timeoutMilliseconds: UInt32
    public var peers: [Peer]
    /// Local mode: route local clients (under `vpm exec`) to the local instance of their AID.
    public var local: Bool

    public init(listeners: [Listener] = [], timeoutMilliseconds: UInt32 = 1000, peers: [Peer] = [], local: Bool = false) {
        self.listeners = listeners
        self.timeoutMilliseconds = timeoutMilliseconds
        self.peers = peers
        self.local = local
    }

    public static let none = Cooperation()

    /// The peer whose network holds `address`.
    public func peer(for address: IPAddress) -> Peer? {
        peers.first { $0.network.containsAddress(address) }
    }
}

extension SourceMatch {
    /// Whether the address is covered, whatever the port.
    public func containsAddress(_ address: IPAddress) -> Bool {
        switch self {
        case .prefix: contains(address, port: 0)
        case .address(let own), .addressPort(let own, _): own == address
        }
    }
}
