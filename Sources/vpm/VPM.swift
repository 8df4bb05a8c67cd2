import ArgumentParser
import Control
import Foundation

@main
struct VPM: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vpm",
        abstract: "Virtual port multiplexer: many instances of a program share one port.",
        discussion: """
            Every instance believes it owns the initial port (say 9000); clients keep dialing \
            it; the engine rewrites ports and checksums on netfilter NFQUEUE so each \
            connection reaches the right instance. See README.md and docs/.
            """,
        version: VPMVersion.current,
        subcommands: [Run.self, Exec.self, Flows.self, Apps.self, Stats.self, Reload.self, RotateKey.self, Rules.self, CheckConfig.self, Probe.self, Demo.self, Translate.self]
    )

    /// Exit codes as conntrack(8) has them: 0 ok, 1 error, 2 usage. Errors print as
    /// `vpm: what happened and what to do`.
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch let failure as Failure {
            log(failure.description)
            Foundation.exit(1)
        } catch {
            // ArgumentParser exits 64 (EX_USAGE) on bad usage; vpm uses 2, like conntrack(8).
            if exitCode(for: error) == .validationFailure {
                FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
                Foundation.exit(2)
            }
            exit(withError: error)
        }
    }
}
