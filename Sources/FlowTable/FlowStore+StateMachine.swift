import Packet

// Per-packet bookkeeping and the state machine. A simplified conntrack without sequence
// numbers: a packet is believed, so the table follows a connection's life closely enough to
// pick a timeout, and leaves the rest to the endpoints.
//
// TCP (direction is the packet's; "ACK" means the ACK flag):
//
// | state       | packet                                        | next        |
// |-------------|-----------------------------------------------|-------------|
// | any         | RST, either way                               | closed      |
// | closed      | SYN (no ACK) to server: client port reused    | opening, counters and firstSeen reset |
// | opening     | SYN+ACK to client                             | opening, handshake answered |
// | opening     | ACK to server after the SYN+ACK               | established |
// | opening     | non-SYN packets both ways (picked up mid-flow)| established |
// | opening,    | FIN, either way                               | closing     |
// |  established|                                               |             |
// | closing     | the other side's FIN                          | closing, both FINs seen |
// | closing     | both FINs seen, then ACK from the side that did not send the last FIN | closed |
// | otherwise   | (retransmissions, stray SYNs, data)           | unchanged   |
//
// UDP: a flow starts as `udp`; the first datagram to the client makes it `udpStream`.
// TCP flags on a UDP flow are ignored. Every packet, whatever its effect on the state,
// is counted and refreshes lastSeen (the flow moves to the tail of its state's LRU list).
extension FlowStore {
    mutating func update(
        _ handle: FlowHandle, direction: Direction, tcpFlags: TCPFlags, bytes: Int, now: UInt64
    ) -> FlowUpdate? {
        guard contains(handle) else { return nil }
        let slot = handle.slot
        let index = Int(slot)
        let previousState = slots[index].state
        var state = previousState
        var progress = slots[index].progress
        if slots[index].key.transport == .tcp {
            if Self.advanceTCP(&state, &progress, direction: direction, flags: tcpFlags) {
                // A new connection on an old key: its own age and counters.
                slots[index].firstSeen = now
                slots[index].counters = .zero
                reopened &+= 1
            }
        } else if direction == .toClient && state == .udp {
            state = .udpStream
        }
        slots[index].state = state
        slots[index].progress = progress
        slots[index].counters.count(direction, bytes: bytes > 0 ? UInt64(bytes) : 0)
        // Keep lastSeen monotonic even if a caller's clock steps back.
        if now > slots[index].lastSeen { slots[index].lastSeen = now }
        move(slot, from: previousState.listIndex, to: state.listIndex)
        if state != previousState {
            transitions &+= 1
            journal(.update, slot)
        }
        return FlowUpdate(virtualPort: slots[index].virtualPort, state: state, previousState: previousState,
                          mode: slots[index].mode)
    }

    /// The TCP transition for one packet (see the table above). Returns true when a SYN
    /// reopened a closed flow.
    static func advanceTCP(
        _ state: inout FlowState, _ progress: inout TCPProgress, direction: Direction, flags: TCPFlags
    ) -> Bool {
        if flags.contains(.rst) {
            state = .closed
            return false
        }
        if flags.contains(.syn) {
            if !flags.contains(.ack) {
                guard direction == .toServer && state == .closed else { return false }
                state = .opening
                progress = []
                return true
            }
            if direction == .toClient && state == .opening {
                progress.insert(.synAckToClient)
            }
            return false
        }
        switch state {
        case .closed, .udp, .udpStream:
            return false
        case .opening:
            progress.insert(direction == .toServer ? .dataToServer : .dataToClient)
            let handshakeDone = direction == .toServer && flags.contains(.ack) && progress.contains(.synAckToClient)
            if handshakeDone || progress.isSuperset(of: .dataBothWays) {
                state = .established
            }
        case .established, .closing:
            break
        }
        if flags.contains(.fin) {
            let hadBothFins = progress.isSuperset(of: .bothFins)
            progress.insert(direction == .toServer ? .finFromClient : .finFromServer)
            if !hadBothFins {
                if progress.isSuperset(of: .bothFins) && direction == .toClient {
                    progress.insert(.lastFinFromServer)
                }
                // The ACK riding on the second FIN acknowledges the first, not itself.
                state = .closing
                return false
            }
            // A retransmitted FIN after both were seen may carry the final ACK.
        }
        if state == .closing && progress.isSuperset(of: .bothFins) && flags.contains(.ack) {
            let lastFinFromServer = progress.contains(.lastFinFromServer)
            if (direction == .toServer) == lastFinFromServer {
                state = .closed
            }
        }
        return false
    }
}
