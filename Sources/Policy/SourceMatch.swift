public import FlowTable
public import Packet

/// Which client sources a rule covers. Addresses use the 16-byte form, IPv4 mapped to
/// ::ffff:a.b.c.d, so a `.prefix` length is over 128 bits: an IPv4 /24 is stored as 96 + 24 = 120.
/// That also means an IPv4 prefix never matches an IPv6 address.
public enum SourceMatch: Hashable, Sendable {
    /// Every address in the network `address/length` (host bits clear), any port.
    case prefix(IPAddress, length: Int)
    /// One address, any port.
    case address(IPAddress)
    /// One address and one source port.
    case addressPort(IPAddress, UInt16)

    /// Reads "198.18.1.0/24", "2001:db8::/32", "198.18.3.7", "2001:db8::1", "198.18.4.1:5555"
    /// or "[2001:db8::1]:5555"; nil for anything else, including a prefix with host bits set.
    public init?(_ text: String) {
        guard let parsed = try? Self.parse(text) else { return nil }
        self = parsed
    }

    /// True when a client at `address`, source port `port`, is covered.
    public func contains(_ address: IPAddress, port: UInt16) -> Bool {
        let (base, length, rulePort) = components
        if let rulePort, rulePort != port { return false }
        return AddressMask(length: length).sameNetwork(base, address)
    }

    /// True when some (address, port) is covered by both: the configuration rejects such pairs
    /// so that a client never belongs to two AIDs.
    public func overlaps(_ other: SourceMatch) -> Bool {
        let (base, length, port) = components
        let (otherBase, otherLength, otherPort) = other.components
        if let port, let otherPort, port != otherPort { return false }
        // Prefixes are nested or disjoint: they meet exactly when the shorter one holds the other's base.
        return AddressMask(length: min(length, otherLength)).sameNetwork(base, otherBase)
    }

    /// Base address, prefix length over 128 bits, and port (nil for any port).
    public var components: (address: IPAddress, length: Int, port: UInt16?) {
        switch self {
        case let .prefix(address, length): (address, length, nil)
        case let .address(address): (address, 128, nil)
        case let .addressPort(address, port): (address, 128, port)
        }
    }
}

extension SourceMatch: CustomStringConvertible {
    /// The text form `init?(_:)` reads; IPv4 prefix lengths are shown as written (0-32).
    public var description: String {
        switch self {
        case let .prefix(address, length):
            if address.isIPv4 && length >= 96 { return "\(address)/\(length - 96)" }
            // A prefix shorter than /96 covers more than the IPv4-mapped block: show it as IPv6.
            if address.isIPv4 { return "::ffff:\(address)/\(length)" }
            return "\(address)/\(length)"
        case let .address(address):
            return address.description
        case let .addressPort(address, port):
            return address.endpoint(port)
        }
    }
}

extension SourceMatch {
    static func parse(_ text: String) throws(InvalidValue) -> SourceMatch {
        if text.hasPrefix("[") {
            return try parseBracketed(text)
        }
        if let slash = text.lastIndex(of: "/") {
            return try parsePrefix(address: text[..<slash], length: text[text.index(after: slash)...], text: text)
        }
        // One colon can only be IPv4 address:port; IPv6 text has at least two.
        if text.count(where: { $0 == ":" }) == 1, let colon = text.firstIndex(of: ":") {
            let address = try parseAddress(text[..<colon], in: text)
            return .addressPort(address, try DecimalNumber.port(text[text.index(after: colon)...]))
        }
        return .address(try parseAddress(text[...], in: text))
    }

    private static func parseBracketed(_ text: String) throws(InvalidValue) -> SourceMatch {
        guard let close = text.firstIndex(of: "]") else {
            throw InvalidValue("'\(text)' has '[' without ']'; write an IPv6 address with a port as [2001:db8::1]:5555")
        }
        let address = try parseAddress(text[text.index(after: text.startIndex)..<close], in: text)
        let rest = text[text.index(after: close)...]
        if rest.isEmpty { return .address(address) }
        guard rest.first == ":" else {
            throw InvalidValue("'\(text)' has '\(rest)' after ']'; expected ':' and a port, as in [2001:db8::1]:5555")
        }
        return .addressPort(address, try DecimalNumber.port(rest.dropFirst()))
    }

    private static func parsePrefix(address addressText: Substring, length lengthText: Substring, text: String) throws(InvalidValue) -> SourceMatch {
        let address = try parseAddress(addressText, in: text)
        // IPv6 text that spells an IPv4-mapped address ("::ffff:198.18.0.0/104") counts 128 bits.
        let writtenAsIPv4 = !addressText.contains(":")
        let limit = writtenAsIPv4 ? 32 : 128
        guard let written = DecimalNumber.parse(lengthText, maximum: UInt64(limit)) else {
            throw InvalidValue("prefix length '\(lengthText)' in '\(text)' is not valid; an \(writtenAsIPv4 ? "IPv4" : "IPv6") prefix length is 0-\(limit)")
        }
        let length = Int(written) + (writtenAsIPv4 ? 96 : 0)
        let network = AddressMask(length: length).network(of: address)
        guard network == address else {
            let corrected = SourceMatch.prefix(network, length: length)
            throw InvalidValue("'\(text)' has host bits set; did you mean \(corrected)?")
        }
        return .prefix(address, length: length)
    }

    private static func parseAddress(_ text: Substring, in whole: String) throws(InvalidValue) -> IPAddress {
        guard let address = IPAddress(String(text)) else {
            if text.isEmpty { throw InvalidValue("'\(whole)' has no address") }
            throw InvalidValue("'\(text)' in '\(whole)' is not an IPv4 or IPv6 address")
        }
        return address
    }
}
