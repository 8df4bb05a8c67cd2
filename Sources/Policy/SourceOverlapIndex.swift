import FlowTable
import Packet

/// Finds, for each source rule added, an earlier one it overlaps, in time that grows with
/// the number of distinct prefix lengths, not with the number of rules: a configuration of
/// 100,000 sources loads in a moment where a pairwise check took minutes.
///
/// Prefixes are nested or disjoint, so two rules meet exactly when one holds the other's
/// base (and, for two address:port rules, the ports agree). Kept: the any-port rules by
/// prefix length and network; for every prefix length in use, the networks at that length
/// of the rules longer than it (`inside`, so a new prefix finds the rules it would hold);
/// address:port rules by address and port.
struct SourceOverlapIndex {
    private struct AddressPort: Hashable {
        let address: IPAddress
        let port: UInt16
    }

    private var rules: [(address: IPAddress, length: Int, port: UInt16?)] = []
    /// Any-port rules: length -> network -> rule.
    private var anyPort: [Int: [IPAddress: Int]] = [:]
    /// Length l in use -> network at l of every rule longer than l (address:port rules count
    /// as /128) -> the first such rule.
    private var inside: [Int: [IPAddress: Int]] = [:]
    private var portRules: [AddressPort: Int] = [:]
    /// Address -> the first address:port rule on it.
    private var portAddresses: [IPAddress: Int] = [:]

    /// The number (0-based, in the order added) of an earlier rule `match` overlaps, or nil;
    /// either way `match` is recorded.
    mutating func add(_ match: SourceMatch) -> Int? {
        let (base, length, port) = match.components
        let earlier = overlapping(base, length, port)
        record(base, length, port)
        return earlier
    }

    private mutating func overlapping(_ base: IPAddress, _ length: Int, _ port: UInt16?) -> Int? {
        // An any-port rule holding this one (the same prefix or a shorter one). The recorded
        // rules are disjoint (each overlap stops the configuration), so at most one does.
        for (other, networks) in anyPort where other <= length {
            if let rule = networks[AddressMask(length: other).network(of: base)] { return rule }
        }
        if let port { return portRules[AddressPort(address: base, port: port)] }
        // Rules this any-port prefix would hold: address:port rules on this very address,
        // or longer rules inside it.
        if length == 128 { return portAddresses[base] }
        if inside[length] == nil {
            var networks: [IPAddress: Int] = [:]
            let mask = AddressMask(length: length)
            for (index, rule) in rules.enumerated() where (rule.port == nil ? rule.length : 128) > length {
                let network = mask.network(of: rule.address)
                if networks[network] == nil { networks[network] = index }
            }
            inside[length] = networks
        }
        return inside[length]?[AddressMask(length: length).network(of: base)]
    }

    private mutating func record(_ base: IPAddress, _ length: Int, _ port: UInt16?) {
        let index = rules.count
        rules.append((base, length, port))
        if let port {
            let key = AddressPort(address: base, port: port)
            if portRules[key] == nil { portRules[key] = index }
            if portAddresses[base] == nil { portAddresses[base] = index }
        } else {
            let network = AddressMask(length: length).network(of: base)
            if anyPort[length, default: [:]][network] == nil { anyPort[length, default: [:]][network] = index }
        }
        let effective = port == nil ? length : 128
        for shorter in Array(inside.keys) where shorter < effective {
            let network = AddressMask(length: shorter).network(of: base)
            if inside[shorter]![network] == nil { inside[shorter]![network] = index }
        }
    }
}
