import NetworkLab

/// The engine's own iptables chains (`VPM-*`) in the raw table, where rewriting happens
/// before conntrack sees the packet. Installed on start, removed on exit; nothing outside
/// these chains is touched except the one jump rule per hook.
struct IptablesChains {
    struct Rule {
        var chain: String
        var arguments: [String]
    }

    static let table = "raw"
    /// Built-in hook → our chain.
    static let hooks = [("PREROUTING", "VPM-PREROUTING"), ("OUTPUT", "VPM-OUTPUT")]

    var rules: [Rule]

    /// One fixed translation: arriving TCP to `initialPort` and leaving TCP from
    /// `virtualPort` go to `queue`, untracked, so conntrack never sees a half-rewritten flow.
    static func staticTranslation(queue: UInt16, initialPort: UInt16, virtualPort: UInt16) -> IptablesChains {
        let ingress = ["-p", "tcp", "--dport", "\(initialPort)"]
        let egress = ["-p", "tcp", "--sport", "\(virtualPort)"]
        let toQueue = ["-j", "NFQUEUE", "--queue-num", "\(queue)"]
        return IptablesChains(rules: [
            Rule(chain: "VPM-PREROUTING", arguments: ingress + ["-j", "CT", "--notrack"]),
            Rule(chain: "VPM-PREROUTING", arguments: ingress + toQueue),
            Rule(chain: "VPM-OUTPUT", arguments: egress + ["-j", "CT", "--notrack"]),
            Rule(chain: "VPM-OUTPUT", arguments: egress + toQueue),
        ])
    }

    static let tools = ["iptables", "ip6tables"]

    /// The commands that install the chains, one per line, as an operator would type them.
    func installCommands() -> [[String]] {
        Self.tools.flatMap { tool in
            Self.hooks.map { [tool, "-w", "-t", Self.table, "-N", $0.1] }
                + rules.map { [tool, "-w", "-t", Self.table, "-A", $0.chain] + $0.arguments }
                + Self.hooks.map { [tool, "-w", "-t", Self.table, "-I", $0.0, "1", "-j", $0.1] }
        }
    }

    /// The commands that remove the chains again (safe to run when they are absent).
    static func removeCommands() -> [[String]] {
        tools.flatMap { tool in
            hooks.flatMap { hook, chain in
                [[tool, "-w", "-t", table, "-D", hook, "-j", chain],
                 [tool, "-w", "-t", table, "-F", chain],
                 [tool, "-w", "-t", table, "-X", chain]]
            }
        }
    }

    /// Installs the chains; on any failure removes what was installed and throws.
    func install() throws {
        Self.remove()  // a previous run killed with SIGKILL may have left them
        do {
            for command in installCommands() { try Command.checked(command) }
        } catch {
            Self.remove()
            throw error
        }
    }

    /// Removes the chains, ignoring what is already gone.
    static func remove() {
        for command in removeCommands() {
            // A missing jump rule (-D) loops forever in no tool, but a duplicate jump would
            // stay behind: delete until the tool says it is gone.
            for _ in 0..<8 {
                guard let output = try? Command.run(command, timeout: 10), output.status == 0,
                      command.contains("-D") else { break }
            }
        }
    }
}
