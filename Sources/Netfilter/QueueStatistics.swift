/// Counters of one queue, owned by the thread that runs it.
public struct QueueStatistics: Sendable, Equatable, Codable {
    public var packetsReceived: UInt64 = 0
    public var datagramsReceived: UInt64 = 0
    public var verdictsSent: UInt64 = 0
    public var payloadsReturned: UInt64 = 0
    /// The socket overflowed and the kernel dropped (or failed open) packets for us.
    public var receiveBufferOverruns: UInt64 = 0
    public var verdictFailures: UInt64 = 0
    /// Netlink messages that were not packets and not acknowledgements.
    public var unexpectedMessages: UInt64 = 0
    public init() {}
}
