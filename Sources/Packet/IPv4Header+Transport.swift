extension IPv4Header {
    /// Finds the TCP or UDP header after the options. Requires a checked view.
    func locateTransport() throws(PacketError) -> TransportLocation {
        // Only the first fragment carries the transport header.
        guard fragmentOffset == 0 else { throw .nonFirstFragment }
        guard let transport = TransportProtocol(rawValue: protocolNumber) else {
            throw .unsupportedTransport(protocolNumber)
        }
        return TransportLocation(offset: headerLength, transportProtocol: transport, isFirstFragment: moreFragments)
    }
}
