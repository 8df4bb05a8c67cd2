import Foundation
import HostCommand
import Policy

/// The socket datapath's nft table `inet vpm_socket`: connections from other hosts to the
/// steered initial ports, and their answers, bypass conntrack (`notrack`, at the raw
/// priority, before conntrack sees them). The sk_lookup program needs no conntrack, and
/// conntrack is most of what kernel NAT costs a connection (docs/performance.md). Loopback
/// is left tracked: local programs' connections are decided through the queue and
/// translated by the kernel datapath's NAT.
struct UntrackedPorts: Sendable, Equatable {
    static let table = "vpm_socket"

    let script: String

    /// The steered ports of `configuration`: its TCP initial ports. (UDP answers leave an
    /// unconnected socket from its own port, the virtual one: they need a translation, so UDP
    /// stays on kernel NAT, decided by its maps.)
    static func ports(_ configuration: Configuration) -> [InitialPort] {
        configuration.initialPorts.filter { $0.transport == .tcp }
    }

    init(_ configuration: Configuration) {
        let name = "inet \(Self.table)"
        let elements = Self.ports(configuration).map { "\($0.transport.name) . \($0.port)" }
        var lines = ["add table \(name)", "delete table \(name)", "add table \(name)",
                     "add set \(name) steered { type inet_proto . inet_service; }"]
        if !elements.isEmpty { lines.append("add element \(name) steered { \(elements.joined(separator: ", ")) }") }
        lines += [
            "add chain \(name) arriving { type filter hook prerouting priority -300; policy accept; }",
            "add rule \(name) arriving iif != \"lo\" meta l4proto . th dport @steered notrack",
            "add chain \(name) leaving { type filter hook output priority -300; policy accept; }",
            "add rule \(name) leaving oif != \"lo\" meta l4proto . th sport @steered notrack",
        ]
        script = lines.joined(separator: "\n") + "\n"
    }

    func install() throws { try KernelNAT.run(script, prefix: []) }

    static func remove() {
        _ = try? Command.run(["nft", "delete", "table", "inet", table], timeout: 10)
    }
}
