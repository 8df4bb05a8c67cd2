/// Why the negotiation server could not start, with what to do about it.
public struct NegotiationServerError: Error, CustomStringConvertible {
    /// nil: every address.
    public var host: String?
    public var port: Int
    public var reason: String

    public var description: String {
        "cannot listen for negotiations on \(NegotiationServer.Endpoint(host: host, port: port)): \(reason)"
    }
}
