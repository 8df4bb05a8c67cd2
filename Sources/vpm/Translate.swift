import ArgumentParser
import Foundation
import Engine
import Netfilter

struct Translate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Move TCP connections from one port to another through an NFQUEUE queue.",
        discussion: """
            A diagnostic datapath with one fixed translation and no policy: arriving TCP to \
            the initial port is rewritten to the virtual port, replies back. With \
            --install-rules it installs its VPM-* chains in the raw table on start and removes \
            them on exit (SIGINT/SIGTERM included). Counters are printed as JSON on exit.
            """)

    @Option(help: "NFQUEUE queue number.") var queue: UInt16 = 0
    @Option(help: "The port clients dial.") var initialPort: UInt16
    @Option(help: "The port the server really listens on.") var virtualPort: UInt16
    @Flag(inversion: .prefixedNo, help: "Receive GSO super-packets (NFQA_CFG_F_GSO).") var gso = true
    @Flag(help: "Accept packets instead of dropping them when the queue is full.") var failOpen = false
    @Flag(help: "Install the VPM-* iptables chains on start and remove them on exit.") var installRules = false
    @Option(help: "Also write the counters as JSON to this file on exit.") var statsFile: String?

    func validate() throws {
        guard initialPort != 0, virtualPort != 0 else { throw ValidationError("ports must be 1-65535") }
        guard initialPort != virtualPort else {
            throw ValidationError("--initial-port and --virtual-port must differ")
        }
    }

    func run() throws {
        StopSignal.install()
        let rules = RuleSet.staticTranslation(queue: queue, initialPort: initialPort, virtualPort: virtualPort)
        if installRules {
            do { try rules.install() } catch {
                throw Failure("cannot install iptables rules: \(error)")
            }
        }
        defer { if installRules { RuleSet.remove() } }

        var configuration = QueueConfiguration(queueNumber: queue)
        configuration.segmentationOffload = gso
        configuration.failOpen = failOpen
        let netfilterQueue: NetfilterQueue
        do { netfilterQueue = try NetfilterQueue(configuration) } catch { throw Failure("\(error)") }

        var translator = StaticTranslator(initialPort: initialPort, virtualPort: virtualPort)
        log("translating tcp \(initialPort) -> \(virtualPort) on queue \(queue) (GSO \(gso ? "on" : "off")); ready")
        while !StopSignal.isRequested {
            do {
                guard try netfilterQueue.wait(timeoutMilliseconds: 200) else { continue }
                try netfilterQueue.drain { translator.handle($0) }
            } catch {
                throw Failure("\(error)")
            }
        }
        let report = TranslateReport(translator: translator.counters, queue: netfilterQueue.statistics)
        let json = try report.json()
        print(json)
        if let statsFile { try json.write(toFile: statsFile, atomically: true, encoding: .utf8) }
        log("stopped after \(translator.counters.packets) packets")
    }
}

struct TranslateReport: Codable {
    var translator: StaticTranslator.Counters
    var queue: QueueStatistics

    func json() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: try encoder.encode(self), as: UTF8.self)
    }
}

