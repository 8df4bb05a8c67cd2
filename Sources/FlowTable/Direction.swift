/// Which way a packet travels relative to the flow's client.
public enum Direction: Sendable, Hashable {
    /// Client → server (ingress on the server host).
    case toServer
    /// Server → client (egress on the server host).
    case toClient
}
