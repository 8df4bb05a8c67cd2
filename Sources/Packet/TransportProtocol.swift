/// The transport protocols vpm rewrites, by their IP protocol number.
public enum TransportProtocol: UInt8, Sendable {
    case tcp = 6
    case udp = 17
}
