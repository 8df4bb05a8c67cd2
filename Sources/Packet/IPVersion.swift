/// The IP version of a packet.
public enum IPVersion: Sendable {
    case v4
    case v6
}
