import ArgumentParser
import Foundation
import NetworkLab

struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show vpm working: probe this host, then move a real TCP transfer through a queue.",
        discussion: """
            Makes two throwaway hosts (network namespaces joined by a veth pair, addresses in
            198.18.0.0/24), runs `vpm translate` on the server host, and sends random data both
            ways with socat: the client dials port 9000, the server listens on 20017, and vpm
            rewrites every packet in between. sha256 sums must match. Everything is removed
            afterwards, also when a step fails.
            """)

    @Option(help: "Megabytes to send each way.") var megabytes = 10
    @Flag(inversion: .prefixedNo, help: "Use GSO super-packets (NFQA_CFG_F_GSO).") var gso = true

    func run() throws {
        print("== 1/3 probe: can this host run vpm?")
        let results = HostProbe(queue: 0).run()
        for result in results { print(result.line) }
        guard !results.contains(where: { $0.status == .fail }) else {
            throw Failure("the probe found problems (see above); fix them and run `vpm demo` again")
        }

        let name = "vpm-demo-\(getpid())"
        print("\n== 2/3 two hosts: namespaces \(name)-c (198.18.0.2) and \(name)-s (198.18.0.1)")
        let lab: NetworkLab
        do { lab = try NetworkLab(name: name) } catch { throw Failure("cannot make the demo network: \(error)") }
        defer { lab.tearDown() }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(name).path
        defer { try? FileManager.default.removeItem(atPath: directory) }

        print("\n== 3/3 transfer: client dials 198.18.0.1:9000, server listens on 20017, vpm rewrites in between")
        var transfer = TranslationRun(vpmExecutable: Bundle.main.executablePath ?? CommandLine.arguments[0])
        transfer.bytes = megabytes << 20
        transfer.segmentationOffload = gso
        let started = Date()
        let result: TranslationRun.Result
        do { result = try transfer.run(in: lab, directory: directory) } catch {
            throw Failure("the transfer failed: \(error)\nengine log: \((try? String(contentsOfFile: directory + "/engine.log", encoding: .utf8)) ?? "none")")
        }
        let seconds = Date().timeIntervalSince(started)
        print("  upload   sent \(result.uploadSent.prefix(16))…  received \(result.uploadReceived.prefix(16))…")
        print("  download sent \(result.downloadSent.prefix(16))…  received \(result.downloadReceived.prefix(16))…")
        print("  engine counters: \(result.engineReport.trimmingCharacters(in: .whitespacesAndNewlines))")
        print(String(format: "  %d MB each way in %.1f s, GSO %@", megabytes, seconds, gso ? "on" : "off"))
        guard result.intact else { throw Failure("data changed on the way: sha256 sums differ") }
        guard !result.rulesAfterStop.contains("VPM-") else {
            throw Failure("the engine left its iptables chains behind")
        }
        print("\nvpm demo passed: both transfers arrived intact through port 9000 → 20017 and back.")
    }
}
