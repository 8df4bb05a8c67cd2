import ArgumentParser
import Engine
import Policy

struct CheckConfig: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config",
        abstract: "Validate a configuration file; errors point at their line.",
        discussion: """
            Exits 0 when the file is valid, 1 when it is not, or when `vpm run` would refuse it \
            on this host (virtual ports inside the kernel's ephemeral range: the message gives \
            the sysctl). --json prints the verdict as one JSON object on stdout, either way.
            """)

    @Argument(help: "Configuration file.") var file: String
    @Flag(help: "Print the result as JSON (ok, counts, or the error with its line and column).") var json = false

    /// `vpm check-config --json`: what scripts read.
    struct Report: Encodable {
        struct Problem: Encodable {
            var line: Int?
            var column: Int?
            var message: String
        }

        var file: String
        var ok: Bool
        var applications: Int?
        var instances: Int?
        var ports: [String]?
        var sources: Int?
        var metrics: String?
        /// Valid, but `vpm run` will refuse it as it is (the keys' file mode).
        var warnings: [String]?
        var error: Problem?
    }

    func run() throws {
        let configuration: Configuration
        do { configuration = try Configuration.load(path: file) } catch {
            if json {
                try printJSON(Report(file: file, ok: false, error: .init(line: error.line, column: error.column, message: error.message)))
                throw ExitCode.failure
            }
            throw Failure("\(error)")
        }
        // What `vpm run` checks at start on this host: the same refusal, the same words.
        if let problem = Engine.hostProblems(configuration).first {
            if json {
                try printJSON(Report(file: file, ok: false, error: .init(line: nil, column: nil, message: "vpm run would refuse it on this host: \(problem)")))
                throw ExitCode.failure
            }
            throw Failure("\(file): vpm run would refuse it on this host: \(problem)")
        }
        let ports = configuration.initialPorts.map(\.description)
        let warnings = configuration.keysExposure(path: file).map { ["vpm run will refuse it: \($0)"] } ?? []
        if json {
            try printJSON(Report(file: file, ok: true, applications: configuration.applications.count,
                                 instances: configuration.instances.count, ports: ports, sources: configuration.sources.count,
                                 metrics: configuration.metrics.map { "http://\($0.endpoint)/metrics" },
                                 warnings: warnings.isEmpty ? nil : warnings))
            return
        }
        for warning in warnings { log("warning: \(warning)") }
        print("\(file): ok — \(configuration.applications.count) applications, \(configuration.instances.count) instances, "
              + "ports \(ports.joined(separator: ", ")), \(configuration.sources.count) source rules"
              + (configuration.metrics.map { ", metrics on http://\($0.endpoint)/metrics" } ?? "")
              + (configuration.tenants.map { ", up to \($0.limit) tenants on \($0.ports.map(\.description).joined(separator: ", "))" } ?? ""))
    }
}
