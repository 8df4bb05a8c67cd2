public import Packet

/// A fleet (docs/fleet.md): the engines of many hosts find each other, and each other's
/// instances, in an etcd directory instead of listing each other as `cooperative.peers`.
/// Each engine publishes itself under a lease it keeps alive; two engines derive their
/// negotiation key from each other's published public keys, so the directory holds no secret.
public struct FleetSettings: Sendable, Equatable {
    /// etcd's client URLs (`http://198.18.9.1:2379`, `https://…`); any live member will do.
    public var endpoints: [String]
    /// Where this fleet's entries live in etcd's key space.
    public var prefix: String = "/vpm"
    /// This engine's name in the directory; unique in the fleet (default: the host name).
    public var name: String?
    /// The fleet's hosts: negotiation and virtual-port traffic from and to them is the
    /// engine's, as with a peer's `network`.
    public var network: SourceMatch
    /// The virtual ports of every host of the fleet: what their instances' replies come from.
    public var virtualPorts: ClosedRange<UInt16>
    /// Service addresses: a program under `vpm exec` that dials one on an initial port
    /// reaches a live host of the fleet with an instance of its AID (kernel datapath).
    public var services: [IPAddress] = []
    /// The addresses this engine publishes; empty: every global address of the host.
    public var addresses: [IPAddress] = []
    /// The lease's time to live in seconds: how long a dead engine's entries outlive it.
    public var leaseSeconds: Int = 10
    /// This engine's X25519 private key (created, mode 0600, when missing).
    public var keyFile: String = "/var/lib/vpm/fleet.key"
    /// etcd credentials, when etcd has authentication on: the user and a file holding its password.
    public var user: String?
    public var passwordFile: String?
    /// TLS to etcd: the CA that signed its certificate, and this engine's client certificate and key.
    public var caFile: String?
    public var certificateFile: String?
    public var certificateKeyFile: String?
    public var line: Int = 0

    public init(endpoints: [String], network: SourceMatch, virtualPorts: ClosedRange<UInt16>) {
        self.endpoints = endpoints
        self.network = network
        self.virtualPorts = virtualPorts
    }

    /// A name in the directory: 1 to 63 letters, digits, '-', '_' or '.' (a host name fits).
    public static func isValidName(_ text: String) -> Bool {
        (1...63).contains(text.utf8.count) && text.utf8.allSatisfy { byte in
            (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                || byte == 0x2D || byte == 0x5F || byte == 0x2E
        }
    }
}
