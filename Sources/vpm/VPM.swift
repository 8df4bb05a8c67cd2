import ArgumentParser
import Foundation

@main
struct VPM: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vpm",
        abstract: "Virtual port multiplexer: many instances of a program share one port.",
        discussion: """
            Every instance believes it owns the initial port (say 9000); clients keep dialing it;
            the engine rewrites ports and checksums on netfilter NFQUEUE so each connection
            reaches the right instance. See README.md and docs/architecture.md.
            """,
        subcommands: [Probe.self, Demo.self, Translate.self]
    )

    /// Exit codes as conntrack(8) has them: 0 ok, 1 error, 2 usage.
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch let failure as Failure {
            log(failure.description)
            Foundation.exit(1)
        } catch {
            exit(withError: error)
        }
    }
}
