import ArgumentParser
import Policy

struct CheckConfig: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config",
        abstract: "Validate a configuration file; errors point at their line.")

    @Argument(help: "Configuration file.") var file: String

    func run() throws {
        let configuration: Configuration
        do { configuration = try Configuration.load(path: file) } catch { throw Failure("\(error)") }
        let instances = configuration.instances.count
        print("\(file): ok — \(configuration.applications.count) applications, \(instances) instances, "
              + "ports \(configuration.initialPorts.map(\.description).joined(separator: ", ")), "
              + "\(configuration.sources.count) source rules")
    }
}
