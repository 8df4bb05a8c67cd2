import ArgumentParser
import Foundation
import NetworkLab

struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show vpm working: two tenants' servers share port 9000 on one host.",
        discussion: """
            Probes the host, then makes throwaway hosts in network namespaces: a server \
            (198.18.0.1) and four clients (198.18.1.2, 198.18.2.2, 198.18.3.7, 198.18.9.9), each \
            also on IPv6 (2001:db8::1 and 2001:db8:0:1::2, 2001:db8:0:2::2, 2001:db8:0:3::7, \
            2001:db8:0:9::9). \
            The engine runs on the server host with the built-in configuration (print it with \
            `vpm demo --print-config`), and two unmodified copies of nginx, both configured \
            with `listen 9000` (both families), run there under `vpm exec`, one per tenant \
            (acme, globex). Every client dials 198.18.0.1:9000 and [2001:db8::1]:9000; the demo prints which copy answered each one, \
            `vpm apps`, `vpm flows` and nginx's own log, then removes everything it made, \
            also when a step fails.
            """)

    @Flag(help: "Print the built-in configuration and exit.") var printConfig = false

    /// Two tenants without fixed instances: `vpm exec` registers their nginx copies.
    /// The demo's shared key for the cooperative part (a fresh one each run).
    static let key = (0..<32).map { _ in String(UInt8.random(in: 0...255), radix: 16) }
        .map { $0.count == 1 ? "0" + $0 : $0 }.joined()

    static let configurationText = """
        # vpm demo, server host 198.18.0.1: two tenants share port 9000; their instances
        # come from `vpm exec`. Clients are routed by source address (either family), and
        # clients on 198.18.1.2, whose host runs an engine too, by their own AID
        # (cooperative mode).
        virtual-ports: 20000-20999
        ports: [9000]
        applications:
          acme: {}
          globex: {}
          initech: {}
        sources:
          - from: 198.18.1.0/24
            aid: acme
          - from: 198.18.2.0/24
            aid: globex
          - from: 198.18.3.7
            aid: globex
          - from: 2001:db8:0:1::/64
            aid: acme
          - from: 2001:db8:0:2::/64
            aid: globex
          - from: 2001:db8:0:3::7
            aid: globex
        cooperative:
          listen: 9901
          peers:
            - network: 198.18.1.2
              key: \(key)

        """

    /// The client host 198.18.1.2's engine: it negotiates with the server host's.
    static let clientConfigurationText = """
        # vpm demo, client host 198.18.1.2: its programs' AIDs choose their instance.
        virtual-ports: 21000-21999
        ports: [9000]
        applications: {acme: {}, globex: {}, initech: {}}
        cooperative:
          timeout: 1s
          peers:
            - network: 198.18.0.1
              key: \(key)
              virtual-ports: 20000-20999

        """

    func run() throws {
        if printConfig {
            print(Self.configurationText, terminator: "")
            return
        }
        print("== 1/5 probe: can this host run vpm?")
        let results = HostProbe(queue: 0).run()
        for result in results { print(result.line) }
        guard !results.contains(where: { $0.status == .fail }) else {
            throw Failure("the probe found problems (see above); fix them and run `vpm demo` again")
        }

        let name = "vpm-demo-\(getpid())"
        let clients = [("198.18.1.2", "acme"), ("198.18.2.2", "globex"), ("198.18.3.7", "globex"),
                       ("198.18.9.9", "no AID: refused")]
        print("\n== 2/5 hosts: server 198.18.0.1 and clients \(clients.map(\.0).joined(separator: ", "))")
        let lab: NetworkLab
        do { lab = try NetworkLab(name: name, clientAddresses: clients.map(\.0)) } catch {
            throw Failure("cannot make the demo network: \(error)")
        }
        defer { lab.tearDown() }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(name).path
        defer { try? FileManager.default.removeItem(atPath: directory) }

        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let vpm = Bundle.main.executablePath ?? CommandLine.arguments[0]
        print("\n== 3/5 engine and instances")
        let engine = try EngineRun(lab: lab, vpmExecutable: vpm, directory: directory, configuration: Self.configurationText)
        do { try engine.start() } catch { throw Failure("the engine did not start: \(error)\n\(engine.log)") }
        defer { _ = engine.stop() }
        print("  engine: vpm run --config <built-in>  (queue 0, rules in VPM-* chains)")
        var sites: [NginxSite] = []
        for aid in ["acme", "globex"] {
            let site = try NginxSite(root: "\(directory)/\(aid)", content: "hello from \(aid)\n")
            sites.append(site)
            _ = try lab.spawn(lab.server, [vpm, "exec", "--aid", aid, "--config", engine.configurationPath,
                                           "--socket", engine.socketPath, "--"] + site.command,
                              log: "\(directory)/\(aid)-nginx.log")
            print("  instance \(aid): vpm exec --aid \(aid) -- nginx  (its nginx.conf says `listen 9000;`)")
        }
        do {
            try NetworkLab.poll("both nginx copies to bind", timeout: 20) {
                let apps = (try? engine.apps(json: true).standardOutput) ?? ""
                return apps.components(separatedBy: "\"aid\"").count - 1 == 2
            }
        } catch {
            throw Failure("the nginx copies did not come up: \(error)\n\(engine.log)")
        }
        for app in try engine.apps(json: false).standardOutput.split(separator: "\n") where !app.hasPrefix("AID") {
            let fields = app.split(separator: " ", omittingEmptySubsequences: true)
            if fields.count > 2, let port = UInt16(fields[2]) { try lab.waitForListener(lab.server, port: port) }
        }
        print("\n$ vpm apps")
        print(try engine.apps(json: false).standardOutput, terminator: "")

        print("\n== 4/5 every client dials 198.18.0.1:9000 and [2001:db8::1]:9000")
        var wrong: [String] = []
        for (index, (address, expected)) in clients.enumerated() {
          for family in NetworkLab.AddressFamily.allCases {
            let url = "http://\(NetworkLab.endpoint(lab.server.address(family), 9000))/"
            let output = try lab.run(lab.clients[index], ["curl", "-sS", "--max-time", "5", url], timeout: 10)
            let address = lab.clients[index].address(family)
            let answer = output.status == 0
                ? output.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)
                : "refused: " + output.standardError.trimmingCharacters(in: .whitespacesAndNewlines)
            print("  \(address.padding(toLength: 16, withPad: " ", startingAt: 0)) expects \(expected.padding(toLength: 16, withPad: " ", startingAt: 0)) got: \(answer)")
            let right = expected.hasPrefix("no AID") ? output.status != 0 : answer == "hello from \(expected)"
            if !right { wrong.append(address) }
          }
        }
        print("\n$ vpm flows")
        let flows = try engine.flows()
        print(flows.standardOutput, terminator: "")
        print(flows.standardError.replacingOccurrences(of: "vpm: ", with: "(stderr) "), terminator: "")
        usleep(400_000)  // the engine publishes its counters every 200 ms
        print("\n$ vpm stats")
        print(try engine.stats().standardOutput, terminator: "")
        print("\n$ tail -n 2 acme/access.log   # nginx's own log: the port it served on")
        let log = (try? String(contentsOfFile: sites[0].accessLog, encoding: .utf8)) ?? ""
        print(log.split(separator: "\n").suffix(2).map { "  " + $0 }.joined(separator: "\n"))
        try cooperative(lab: lab, vpm: vpm, directory: directory, wrong: &wrong)
        _ = engine.stop()
        guard wrong.isEmpty else { throw Failure("wrong answers for \(wrong.joined(separator: ", ")); engine log:\n\(engine.log)") }
        let rules = (try? lab.run(lab.server, ["iptables-save"]).standardOutput) ?? ""
        guard !rules.contains("VPM-") else { throw Failure("the engine left its iptables chains behind") }
        print("\nvpm demo passed: two unmodified nginx copies share port 9000; each client reached the copy")
        print("of its AID (by address, or negotiated by its own engine), and the engines removed their rules.")
    }

    /// Step 5: an engine on the client host too. A plain program there is still routed by
    /// its address; one under `vpm exec` by its AID, negotiated with the server's engine.
    private func cooperative(lab: NetworkLab, vpm: String, directory: String, wrong: inout [String]) throws {
        let host = lab.clients[0]
        print("\n== 5/5 cooperative: an engine on the client host \(host.address) too")
        let client = try EngineRun(lab: lab, vpmExecutable: vpm, directory: "\(directory)/client",
                                   configuration: Self.clientConfigurationText, host: host)
        do { try client.start() } catch { throw Failure("the client host's engine did not start: \(error)\n\(client.log)") }
        defer { _ = client.stop() }
        let url = "http://198.18.0.1:9000/"
        let cases: [(String?, String)] = [(nil, "hello from acme"), ("globex", "hello from globex"), ("initech", "refused")]
        for (aid, expected) in cases {
            let command = ["curl", "-sS", "--max-time", "5", url]
            let output = try aid.map { try client.execAndWait($0, command, timeout: 15) } ?? lab.run(host, command, timeout: 15)
            let answer = output.status == 0
                ? output.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)
                : "refused: " + output.standardError.trimmingCharacters(in: .whitespacesAndNewlines)
            let how = aid.map { "vpm exec --aid \($0) -- curl" } ?? "curl (no AID: routed by address)"
            print("  \(host.address) $ \(how.padding(toLength: 34, withPad: " ", startingAt: 0)) got: \(answer)")
            if !answer.hasPrefix(expected) { wrong.append("\(host.address) as \(aid ?? "plain")") }
        }
        print("\n$ vpm flows   # on the client host: the wire carries the virtual port, curl saw 9000")
        print(try client.flows().standardOutput, terminator: "")
        for line in client.log.split(separator: "\n") where line.contains("cooperative connection refused") {
            print("  log: \(Self.messageFirst(String(line)))")
        }
    }

    /// A text log line ("TIME LEVEL vpm : FIELDS [SOURCE] MESSAGE") as the demo shows it:
    /// the message, then its fields.
    static func messageFirst(_ line: String) -> String {
        let words = line.split(separator: " ", omittingEmptySubsequences: false).dropFirst(3)
        var rest = words.joined(separator: " ")
        if rest.hasPrefix(": ") { rest.removeFirst(2) } else if rest.hasPrefix(":") { rest.removeFirst() }
        guard let source = rest.range(of: "] ") else { return rest }
        let message = rest[source.upperBound...]
        let fields = rest[..<source.lowerBound].split(separator: " ").filter { !$0.hasPrefix("[") }.joined(separator: " ")
        return fields.isEmpty ? String(message) : "\(message) \(fields)"
    }
}
