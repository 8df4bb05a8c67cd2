import ArgumentParser
import Foundation
import NetworkLab
import Policy

struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show vpm working: two tenants' servers share port 9000 on one host.",
        discussion: """
            Probes the host, then makes throwaway hosts in network namespaces: a server \
            (198.18.0.1) and four clients (198.18.1.2, 198.18.2.2, 198.18.3.7, 198.18.9.9). \
            Two instances of a small real server (socat) run on the server host, one per \
            tenant (acme, globex); the engine runs with the built-in configuration (print it \
            with `vpm demo --print-config`). Every client dials 198.18.0.1:9000; the demo \
            prints which instance answered each one and the engine's flow table, then removes \
            everything it made, also when a step fails.
            """)

    @Flag(help: "Print the built-in configuration and exit.") var printConfig = false

    func run() throws {
        if printConfig {
            print(Configuration.example, terminator: "")
            return
        }
        print("== 1/4 probe: can this host run vpm?")
        let results = HostProbe(queue: 0).run()
        for result in results { print(result.line) }
        guard !results.contains(where: { $0.status == .fail }) else {
            throw Failure("the probe found problems (see above); fix them and run `vpm demo` again")
        }

        let name = "vpm-demo-\(getpid())"
        let clients = [("198.18.1.2", "acme"), ("198.18.2.2", "globex"), ("198.18.3.7", "globex"),
                       ("198.18.9.9", "no AID: refused")]
        print("\n== 2/4 hosts: server 198.18.0.1 and clients \(clients.map(\.0).joined(separator: ", "))")
        let lab: NetworkLab
        do { lab = try NetworkLab(name: name, clientAddresses: clients.map(\.0)) } catch {
            throw Failure("cannot make the demo network: \(error)")
        }
        defer { lab.tearDown() }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(name).path
        defer { try? FileManager.default.removeItem(atPath: directory) }

        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let configuration = try Configuration.parse(Configuration.example, file: "built-in")
        print("\n== 3/4 instances and engine")
        for instance in configuration.instances where instance.initialPort.transport == .tcp {
            let greeting = "hello from \(instance.aid)"
            _ = try lab.spawn(lab.server, ["socat", "TCP-LISTEN:\(instance.virtualPort),fork,reuseaddr",
                                           "SYSTEM:echo \(greeting)"],
                              log: "\(directory)/\(instance.aid).log")
            try lab.waitForListener(lab.server, port: instance.virtualPort)
            print("  instance \(instance.aid): socat answering \"\(greeting)\" (really on port \(instance.virtualPort))")
        }
        let engine = try EngineRun(lab: lab, vpmExecutable: Bundle.main.executablePath ?? CommandLine.arguments[0],
                                   directory: directory, configuration: Configuration.example)
        do { try engine.start() } catch { throw Failure("the engine did not start: \(error)\n\(engine.log)") }
        defer { _ = engine.stop() }
        print("  engine: vpm run --config <built-in> (queue 0, rules in VPM-* chains)")

        print("\n== 4/4 every client dials 198.18.0.1:9000")
        var wrong: [String] = []
        for (index, (address, expected)) in clients.enumerated() {
            let output = try lab.run(lab.clients[index], ["socat", "-T", "3", "STDIO", "TCP:198.18.0.1:9000"], timeout: 10)
            let answer = output.status == 0
                ? output.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)
                : "connection refused (" + (output.standardError.contains("refused") ? "RST" : "exit \(output.status)") + ")"
            print("  \(address.padding(toLength: 11, withPad: " ", startingAt: 0)) expects \(expected.padding(toLength: 16, withPad: " ", startingAt: 0)) got: \(answer)")
            let right = expected.hasPrefix("no AID") ? output.status != 0 : answer == "hello from \(expected)"
            if !right { wrong.append(address) }
        }
        print("\n$ vpm flows")
        let flows = try engine.flows()
        print(flows.standardOutput, terminator: "")
        print(flows.standardError.replacingOccurrences(of: "vpm: ", with: "(stderr) "), terminator: "")
        usleep(400_000)  // the engine publishes its counters every 200 ms
        print("\n$ vpm stats")
        print(try engine.stats().standardOutput, terminator: "")
        _ = engine.stop()
        guard wrong.isEmpty else { throw Failure("wrong answers for \(wrong.joined(separator: ", ")); engine log:\n\(engine.log)") }
        let rules = (try? lab.run(lab.server, ["iptables-save"]).standardOutput) ?? ""
        guard !rules.contains("VPM-") else { throw Failure("the engine left its iptables chains behind") }
        print("\nvpm demo passed: each tenant's clients reached only their own instance through port 9000;")
        print("the engine removed its rules on exit. (`vpm translate` and `make test` show more.)")
    }
}
