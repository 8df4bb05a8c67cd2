extension NetfilterQueue {
    /// The verdict for a packet that was held (its handler returned `.hold`). `packet.payload`
    /// must point to a copy the caller owns (the receive buffer has been reused since), and
    /// the call must come from the thread that runs the queue.
    public func sendVerdict(_ verdict: Verdict, for packet: QueuedPacket) {
        precondition(verdict.decision != .hold, "a held packet needs a final verdict")
        send(verdict, for: packet)
    }
}
