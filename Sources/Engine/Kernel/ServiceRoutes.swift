import Foundation
import HostCommand
import Packet
import Synchronization

/// The fleet hosts that connections to a service address go to, by slot: the kernel
/// datapath's mark carries a connection's host slot (mode 3, `KernelMark`) and the nft maps
/// `service4`/`service6` turn the slot into the host's address, so conntrack translates the
/// service's address and the initial port into the host's address and virtual port at once.
///
/// A host gets its slot the first time it is needed (`prepare` ahead, from the engine's
/// housekeeping, whenever the fleet's view changes; `slot` otherwise) and keeps it while the
/// engine runs: a map element per host of the fleet, at most 1,023. A slot is handed out
/// only once its element is in the map: a mark whose slot the map lacks would not be
/// translated.
final class ServiceRoutes: Sendable {
    /// Slots whose element is in the map: what `slot` reads.
    private let installed = Mutex<[IPAddress: Int]>([:])
    /// The next free slot; held while nft writes new elements (never on a packet's path).
    private let assigning = Mutex<Int>(1)
    private let table: String
    private let prefix: [String]

    init(table: String = KernelNAT.table, prefix: [String] = []) {
        self.table = table
        self.prefix = prefix
    }

    /// Gives every address in `addresses` a slot (one nft transaction for the new ones).
    func prepare(_ addresses: [IPAddress]) {
        assigning.withLock { next in
            let known = installed.withLock { $0 }
            var fresh: [(IPAddress, Int)] = []
            for address in Set(addresses) where known[address] == nil && next + fresh.count <= KernelMark.maximumSlot {
                fresh.append((address, next + fresh.count))
            }
            guard !fresh.isEmpty else { return }
            // Failed: nothing taken; the next `prepare` or `slot` tries again.
            guard (try? install(fresh)) != nil else { return }
            next += fresh.count
            installed.withLock { map in for (address, slot) in fresh { map[address] = slot } }
        }
    }

    /// The slot of the host at `address`, its element in the map; nil when the map cannot
    /// take it (nft failed, or every slot is taken).
    func slot(for address: IPAddress) -> Int? {
        if let known = installed.withLock({ $0[address] }) { return known }
        prepare([address])
        return installed.withLock { $0[address] }
    }

    private func install(_ elements: [(IPAddress, Int)]) throws {
        var lines: [String] = []
        for (address, slot) in elements {
            let map = address.isIPv4 ? "service4" : "service6"
            lines.append("add element inet \(table) \(map) { 0x\(String(KernelMark.hostKey(slot), radix: 16)) : \(address) }")
        }
        try KernelNAT.run(lines.joined(separator: "\n") + "\n", prefix: prefix)
    }
}
