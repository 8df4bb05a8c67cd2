import Foundation
public import Packet
import Policy

/// What an engine publishes about itself, under `PREFIX/engines/NAME`, attached to its lease.
public struct EngineEntry: Codable, Sendable, Equatable {
    public var version: Int = 1
    public var name: String
    /// Every address peers may see its negotiations and its instances' packets come from.
    public var addresses: [String]
    /// Its negotiation port.
    public var port: UInt16
    /// Its virtual port range, "low-high".
    public var virtualPorts: String
    /// Its X25519 public key, base64 (FleetKey).
    public var publicKey: String
    /// After a key rotation, for one lease: the key before, still honoured for requests
    /// from peers that had not yet seen the new one.
    public var previousPublicKey: String?

    public init(name: String, addresses: [String], port: UInt16, virtualPorts: ClosedRange<UInt16>, publicKey: String) {
        self.name = name
        self.addresses = addresses
        self.port = port
        self.virtualPorts = "\(virtualPorts.lowerBound)-\(virtualPorts.upperBound)"
        self.publicKey = publicKey
    }

    enum CodingKeys: String, CodingKey {
        case version, name, addresses, port
        case virtualPorts = "virtual-ports"
        case publicKey = "public-key"
        case previousPublicKey = "previous-public-key"
    }

    public var virtualPortRange: ClosedRange<UInt16>? { PortRange.parse(virtualPorts) }
}

/// One instance an engine serves, under `PREFIX/instances/ENGINE/AID/PORT/TRANSPORT`.
public struct InstanceEntry: Codable, Sendable, Hashable, Comparable {
    public var engine: String
    public var aid: String
    public var port: UInt16
    public var transport: String

    public init(engine: String, aid: String, port: UInt16, transport: String) {
        self.engine = engine
        self.aid = aid
        self.port = port
        self.transport = transport
    }

    public static func < (one: InstanceEntry, other: InstanceEntry) -> Bool {
        (one.engine, one.aid, one.port, one.transport) < (other.engine, other.aid, other.port, other.transport)
    }
}

/// The keys of one fleet's directory.
public struct DirectoryLayout: Sendable {
    public var prefix: String

    public init(prefix: String) { self.prefix = prefix }

    /// Everything of the fleet: watched as one range.
    public var root: String { prefix + "/" }
    public func engine(_ name: String) -> String { "\(prefix)/engines/\(name)" }
    public func instance(_ entry: InstanceEntry) -> String {
        "\(prefix)/instances/\(entry.engine)/\(entry.aid)/\(entry.port)/\(entry.transport)"
    }

    public enum Entry: Equatable {
        case engine(name: String)
        case instance(engine: String)
    }

    /// What a key under the root names; nil for keys of no entry this version knows.
    public func parse(_ key: String) -> Entry? {
        guard key.hasPrefix(root) else { return nil }
        let parts = key.dropFirst(root.count).split(separator: "/", omittingEmptySubsequences: false)
        if parts.count == 2, parts[0] == "engines", !parts[1].isEmpty { return .engine(name: String(parts[1])) }
        if parts.count == 5, parts[0] == "instances", !parts[1].isEmpty { return .instance(engine: String(parts[1])) }
        return nil
    }
}

/// The directory as this engine last read it: engines by name, instances by key. Entries
/// that do not decode, or that claim addresses outside the fleet's network, are left out
/// (and counted), never half-used.
public struct FleetView: Sendable, Equatable {
    public var engines: [String: EngineEntry] = [:]
    public var instances: [String: InstanceEntry] = [:]
    /// Entries left out, by key, with the reason.
    public var ignored: [String: String] = [:]
    public var revision: Int64 = 0
    /// Each published address and the keys of the engines that publish it, parsed once as
    /// entries are applied, not on each negotiation's lookup.
    private var publishers: [IPAddress: [String]] = [:]

    public init() {}

    /// Applies one put or delete of `key`; `accept` vets an engine entry.
    public mutating func apply(key: String, value: [UInt8]?, layout: DirectoryLayout, accept: (EngineEntry) -> String?) {
        if engines.removeValue(forKey: key) != nil { indexAddresses() }
        instances[key] = nil
        ignored[key] = nil
        guard let value, let entry = layout.parse(key) else { return }
        let decoder = JSONDecoder()
        switch entry {
        case .engine(let name):
            guard let engine = try? decoder.decode(EngineEntry.self, from: Data(value)), engine.name == name else {
                ignored[key] = "not an engine entry of this version"
                return
            }
            if let reason = accept(engine) {
                ignored[key] = reason
                return
            }
            engines[key] = engine
            indexAddresses()
        case .instance(let engineName):
            guard let instance = try? decoder.decode(InstanceEntry.self, from: Data(value)), instance.engine == engineName,
                  key == layout.instance(instance) else {
                ignored[key] = "not an instance entry of this version"
                return
            }
            instances[key] = instance
        }
    }

    private mutating func indexAddresses() {
        publishers = [:]
        for (key, engine) in engines {
            for address in Set(engine.addresses.compactMap(IPAddress.init)) { publishers[address, default: []].append(key) }
        }
    }

    /// Addresses two or more engines publish, with their names: neither is used for such an
    /// address (a conflict the operator must resolve; the member logs it).
    public var conflicts: [String: [String]] {
        publishers.filter { $0.value.count > 1 }.reduce(into: [:]) { conflicts, claim in
            conflicts[claim.key.description] = claim.value.compactMap { engines[$0]?.name }.sorted()
        }
    }

    /// The engine that publishes `address`, unless two claim it (then neither: a conflict
    /// the operator must resolve, logged by the member).
    public func engine(at address: IPAddress) -> EngineEntry? {
        guard let keys = publishers[address], keys.count == 1 else { return nil }
        return engines[keys[0]]
    }

    /// Live engines (those with an entry) serving `aid` on `port`/`transport`, by name.
    public func engines(serving aid: String, port: UInt16, transport: String) -> [EngineEntry] {
        let names = Set(instances.values.filter { $0.aid == aid && $0.port == port && $0.transport == transport }.map(\.engine))
        return engines.values.filter { names.contains($0.name) }.sorted { $0.name < $1.name }
    }
}
