import ArgumentParser
import Engine
import Policy

struct Rules: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print, install or remove the engine's iptables rules (and nft table) for a configuration.",
        discussion: """
            `vpm run` installs and removes these itself; use this (or the scripts in iptables/) \
            to manage them by hand together with `vpm run --no-rules`.
            """)

    enum Action: String, ExpressibleByArgument, CaseIterable { case print, install, remove }

    @Argument(help: "print | install | remove") var action: Action
    @Option(name: .shortAndLong, help: "Configuration file (not needed for remove).") var config: String?
    @Option(help: "The datapath the rules are for: socket (the default: the nft tables inet vpm and inet vpm_socket; vpm run attaches its sk_lookup program), kernel (the table inet vpm) or userspace.")
    var datapath = Datapath.socket.rawValue

    func run() throws {
        if action == .remove {
            Datapath.removeRules()
            return
        }
        guard let config else { throw ValidationError("`vpm rules \(action.rawValue)` needs --config FILE") }
        let configuration: Configuration
        do { configuration = try Configuration.load(path: config) } catch { throw Failure("\(error)") }
        let datapath = try Datapath(argument: datapath)
        switch action {
        case .print: print(datapath.script(configuration), terminator: "")
        case .install:
            do { try datapath.installRules(configuration) } catch { throw Failure("cannot install the rules: \(error)") }
        case .remove: break
        }
    }
}
