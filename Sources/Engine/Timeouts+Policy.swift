import Policy

typealias ConfiguredTimeouts = FlowTimeouts

extension TableTimeouts {
    /// The configured timeouts (seconds) in the flow table's unit (milliseconds).
    init(_ configured: ConfiguredTimeouts) {
        self.init(opening: UInt64(configured.opening) * 1000, established: UInt64(configured.established) * 1000,
                  closing: UInt64(configured.closing) * 1000, closed: UInt64(configured.closed) * 1000,
                  udp: UInt64(configured.udp) * 1000, udpStream: UInt64(configured.udpStream) * 1000)
    }
}
