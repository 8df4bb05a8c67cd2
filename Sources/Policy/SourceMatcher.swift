public import FlowTable
public import Packet

/// Finds the AID of a client source. It runs once per new connection, so it is built once
/// from the rules and a lookup allocates nothing: one hash lookup for address:port rules,
/// then one masked hash lookup per distinct prefix length, longest first.
public struct SourceMatcher: Sendable {
    private struct AddressPort: Hashable, Sendable {
        let address: IPAddress
        let port: UInt16
    }

    /// All rules of one prefix length, keyed by their network address.
    private struct PrefixTable: Sendable {
        let mask: AddressMask
        let aids: [IPAddress: AID]
    }

    private let addressPorts: [AddressPort: AID]
    /// Longest prefix first; single addresses are the /128 table.
    private let prefixTables: [PrefixTable]

    /// A validated configuration has disjoint rules, so at most one matches. Rules built in
    /// code may overlap: then address:port wins over address, a longer prefix over a shorter
    /// one, and among equal rules the first.
    public init(_ rules: [SourceRule]) {
        var addressPorts: [AddressPort: AID] = [:]
        var byLength: [Int: [IPAddress: AID]] = [:]
        for rule in rules {
            let (address, length, port) = rule.match.components
            if let port {
                let key = AddressPort(address: address, port: port)
                if addressPorts[key] == nil { addressPorts[key] = rule.aid }
            } else {
                let network = AddressMask(length: length).network(of: address)
                if byLength[length, default: [:]][network] == nil { byLength[length, default: [:]][network] = rule.aid }
            }
        }
        self.addressPorts = addressPorts
        prefixTables = byLength.keys.sorted(by: >).map { length in
            PrefixTable(mask: AddressMask(length: length), aids: byLength[length] ?? [:])
        }
    }

    /// The AID of a client at `address` with source port `port`, or nil when no rule covers it
    /// (the engine then refuses the connection).
    public func aid(for address: IPAddress, port: UInt16) -> AID? {
        if !addressPorts.isEmpty, let aid = addressPorts[AddressPort(address: address, port: port)] {
            return aid
        }
        for table in prefixTables {
            if let aid = table.aids[table.mask.network(of: address)] { return aid }
        }
        return nil
    }

    public var isEmpty: Bool {
        addressPorts.isEmpty && prefixTables.isEmpty
    }
}
