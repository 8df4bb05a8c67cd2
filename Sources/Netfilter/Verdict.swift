/// What to do with a queued packet.
public struct Verdict: Sendable, Equatable {
    public enum Decision: Sendable, Equatable {
        case accept
        case drop
        /// Run the packet through the same hook again.
        case `repeat`
        /// No verdict now: the caller keeps a copy of the packet and gives its verdict later
        /// with `NetfilterQueue.sendVerdict(_:for:)`, from the queue's thread.
        case hold
    }

    public var decision: Decision
    /// A new mark for the packet; nil leaves the mark as it is.
    public var mark: UInt32?
    /// Bytes of the (in-place rewritten) payload to send back; nil sends no payload,
    /// so the kernel keeps its own unmodified copy.
    public var payloadLength: Int?

    public init(_ decision: Decision, mark: UInt32? = nil, payloadLength: Int? = nil) {
        self.decision = decision
        self.mark = mark
        self.payloadLength = payloadLength
    }

    public static let accept = Verdict(.accept)
    public static let drop = Verdict(.drop)
    public static let hold = Verdict(.hold)

    /// Accept the packet as rewritten in place; `length` bytes of the payload buffer go back.
    public static func acceptModified(length: Int, mark: UInt32? = nil) -> Verdict {
        Verdict(.accept, mark: mark, payloadLength: length)
    }
}
