/// Where a flow stands in its (simplified, conntrack-like) life; each state has its own
/// idle timeout (`FlowTimeouts`). The transitions are listed in FlowStore+StateMachine.swift.
public enum FlowState: String, Sendable, Codable, CaseIterable {
    /// TCP: SYN seen, handshake not complete.
    case opening
    /// TCP: handshake complete, or data seen both ways.
    case established
    /// TCP: FIN seen from one or both sides, the last FIN not yet acknowledged.
    case closing
    /// TCP: both FINs acknowledged, or RST seen. Kept briefly for stragglers and port reuse.
    case closed
    /// UDP: datagrams towards the server only.
    case udp
    /// UDP: replies seen.
    case udpStream

    /// Number of states: one LRU list each.
    static let count = 6

    /// The index of this state's LRU list.
    var listIndex: Int {
        switch self {
        case .opening: 0
        case .established: 1
        case .closing: 2
        case .closed: 3
        case .udp: 4
        case .udpStream: 5
        }
    }

    /// The state whose LRU list is `index`.
    static func at(listIndex index: Int) -> FlowState {
        switch index {
        case 0: .opening
        case 1: .established
        case 2: .closing
        case 3: .closed
        case 4: .udp
        default: .udpStream
        }
    }
}
