import Control
import Foundation
import NetworkLab
import TestSupport
import XCTest

/// `vpm flows --watch` against the real engine: during a real connection (socat, data
/// checked with sha256) a JSON watcher prints the flow's NEW, its state changes and its
/// DESTROY, in order; a second watcher at the same time prints the same as table lines.
final class FlowWatchTests: XCTestCase {
    static let configuration = """
        virtual-ports: 20000-20999
        ports: [9000]
        applications:
          acme:
            instances: {9000: 20017}
        sources:
          - {from: 198.18.1.0/24, aid: acme}
        flows:
          timeouts: {closed: 2s, closing: 5s}
        """

    func testAWatcherSeesAConnectionsWholeLifeInOrder() throws {
        try Privileged.requireRoot()
        let lab = try NetworkLab(name: Privileged.labName("watch"), clientAddresses: ["198.18.1.2", "198.18.9.9"])
        defer { lab.tearDown() }
        let directory = Privileged.scratchDirectory("watch")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let vpm = try Privileged.vpmExecutable()
        let engine = try Privileged.engine(lab: lab, vpmExecutable: vpm, directory: directory, configuration: Self.configuration)
        _ = try lab.spawn(lab.server, ["socat", "-u", "TCP-LISTEN:20017,reuseaddr", "CREATE:\(directory)/received"],
                          log: "\(directory)/instance.log")
        try lab.waitForListener(lab.server, port: 20017)
        try engine.start()
        defer { _ = engine.stop() }
        let jsonLog = "\(directory)/watch.json.log"
        let tableLog = "\(directory)/watch.table.log"
        let jsonWatcher = try lab.spawn(lab.server, [vpm, "flows", "--watch", "--json", "--socket", engine.socketPath], log: jsonLog)
        let tableWatcher = try lab.spawn(lab.server, [vpm, "flows", "--watch", "--aid", "acme", "--socket", engine.socketPath], log: tableLog)
        defer {
            lab.stop(jsonWatcher)
            lab.stop(tableWatcher)
        }
        func read(_ path: String) -> String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }
        do {
            try NetworkLab.poll("both watchers to start", timeout: 10) {
                read(jsonLog).contains("watching the flow table") && read(tableLog).contains("watching the flow table")
            }
            try NetworkLab.makeRandomFile("\(directory)/upload", count: 1 << 20)
            try lab.checked(lab.clients[0], ["socat", "-u", "OPEN:\(directory)/upload", "TCP:\(lab.server.address):9000"], timeout: 60)
            try NetworkLab.poll("the upload to arrive whole", timeout: 10) {
                (try? NetworkLab.sha256("\(directory)/received")) == (try? NetworkLab.sha256("\(directory)/upload"))
            }
            // The closed flow expires 2 s after its last packet (kernel datapath: or when
            // conntrack's entry goes); the watcher prints its DESTROY then.
            // Each watcher reads the events on its own 200 ms tick: wait for both.
            try NetworkLab.poll("both watchers to print the flow's DESTROY", timeout: 20) {
                read(jsonLog).contains(#""event":"destroy""#) && read(tableLog).contains("[DESTROY]")
            }
            let events = try read(jsonLog).split(separator: "\n").filter { $0.hasPrefix("{") }.map {
                try JSONDecoder().decode(FlowEventRecord.self, from: Data($0.utf8))
            }.filter { $0.flow.client == "198.18.1.2" }
            let story = events.map { "\($0.event) \($0.flow.state)" }
            XCTAssertEqual(events.first?.event, "new", "\(story)")
            XCTAssertEqual(events.last?.event, "destroy", "\(story)")
            XCTAssertEqual(Set(events.map(\.flow.clientPort)).count, 1, "one connection: \(story)")
            XCTAssertTrue(events.dropFirst().dropLast().allSatisfy { $0.event == "update" }, "\(story)")
            XCTAssertTrue(story.contains("update established") || story.contains("update closing") || story.contains("update closed"),
                          "the state changes are there: \(story)")
            XCTAssertEqual(events.last?.flow.state, "closed", "\(story)")
            XCTAssertEqual(events.map(\.sequence), events.map(\.sequence).sorted(), "in the engine's order: \(story)")
            XCTAssertEqual(events.first?.flow.aid, "acme")
            XCTAssertEqual(events.first?.flow.virtualPort, 20017)

            let lines = read(tableLog).split(separator: "\n").filter { $0.hasPrefix("[") }
            XCTAssertTrue(lines.first?.hasPrefix("[NEW]") ?? false, "\(lines)")
            XCTAssertTrue(lines.last?.hasPrefix("[DESTROY]") ?? false, "\(lines)")
            XCTAssertTrue(lines.first?.contains("198.18.1.2:") ?? false, "\(lines)")
        } catch {
            XCTFail("engine log:\n\(engine.log)\nwatcher:\n\(read(jsonLog))")
            throw error
        }
    }
}
