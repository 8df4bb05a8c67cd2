public import Packet

extension SourceMatch {
    /// One address family's part of a source match, in the text a packet filter keyed by
    /// family reads (nft's `ip saddr` and `ip6 saddr`).
    public struct FamilyPart: Hashable, Sendable {
        public var isIPv4: Bool
        /// "198.18.1.0/24", "198.18.3.7", "2001:db8::/32", "0.0.0.0/0".
        public var network: String
        /// The one client source port the rule covers; nil for any.
        public var port: UInt16?
        /// One address, not a network.
        public var isSingleAddress: Bool
    }

    /// The match split by family. Addresses are stored IPv4-mapped, so an IPv6 prefix of /96
    /// or shorter that holds the IPv4-mapped block (`::/0`, `::ffff:0:0/96`) covers every
    /// IPv4 client as well: it has an IPv4 part `0.0.0.0/0` besides its IPv6 one.
    public var familyParts: [FamilyPart] {
        let (base, length, port) = components
        if base.isIPv4 && length >= 96 {
            let network = length == 128 ? "\(base)" : "\(base)/\(length - 96)"
            return [FamilyPart(isIPv4: true, network: network, port: port, isSingleAddress: length == 128)]
        }
        let ipv6 = FamilyPart(isIPv4: false, network: length == 128 ? "\(base)" : "\(base)/\(length)", port: port,
                              isSingleAddress: length == 128)
        guard AddressMask(length: length).sameNetwork(base, IPAddress(ipv4: 0)) else { return [ipv6] }
        return [FamilyPart(isIPv4: true, network: "0.0.0.0/0", port: port, isSingleAddress: false), ipv6]
    }
}
