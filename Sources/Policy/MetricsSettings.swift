public import Packet

/// The Prometheus/OpenMetrics endpoint (docs/operations.md): off unless the configuration
/// names an address (`metrics: {listen: 127.0.0.1:9464}`). The counters it shows are the
/// ones `vpm stats` shows; anyone who can reach the address can read them, so the default
/// advice is a loopback or management address.
public struct MetricsSettings: Sendable, Equatable {
    public var address: IPAddress
    public var port: UInt16
    /// The line of `listen` in the file, for messages.
    public var line: Int

    public init(address: IPAddress, port: UInt16, line: Int = 0) {
        self.address = address
        self.port = port
        self.line = line
    }

    /// `[addr]:port` for IPv6, `addr:port` for IPv4.
    public var endpoint: String { address.endpoint(port) }
}
