public import Packet

/// One packet as the decision layer sees it: where it was met, its bytes (in the queue's
/// receive buffer: rewriting them in place is how a datapath changes the packet), and
/// what the kernel said of its checksum. No netfilter type: tests build these from bytes.
public struct PacketInput {
    public enum Hook: Sendable, Equatable {
        /// PREROUTING: arriving from another host.
        case arriving
        /// OUTPUT: leaving a local program.
        case leaving(viaLoopback: Bool)
        /// Any other hook: not one vpm queues from.
        case other
    }

    /// The kernel's packet id: a held packet's verdict is sent with it later.
    public var id: UInt32
    public var hook: Hook
    public var payload: UnsafeMutableRawBufferPointer
    /// The kernel copied less than the whole packet: it must never be sent back changed.
    public var isTruncated: Bool
    public var checksum: ChecksumState

    public init(id: UInt32, hook: Hook, payload: UnsafeMutableRawBufferPointer, isTruncated: Bool = false,
                checksum: ChecksumState) {
        self.id = id
        self.hook = hook
        self.payload = payload
        self.isTruncated = isTruncated
        self.checksum = checksum
    }
}
