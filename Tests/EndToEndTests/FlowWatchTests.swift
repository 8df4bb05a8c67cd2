import Control
import Foundation
import NetworkLab
import TestSupport
import XCTest

/// `vpm flows --watch` against the real engine: during a real connection (socat, data
/// checked with sha256) a JSON watcher prints the flow's NEW, its state changes and its
/// DESTROY, in order; a second watcher at the same time prints the same as table lines.
final class FlowWatchTests: XCTestCase {
    static let timeouts = """
        flows:
          timeouts: {closed: 2s, closing: 5s}
        """

    func testAWatcherSeesAConnectionsWholeLifeInOrder() throws {
        try Privileged.withAcmeEngine("watch", extraConfiguration: Self.timeouts) { lab, engine, directory in
            let vpm = try Privileged.vpmExecutable()
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
                try Privileged.uploadToAcme(lab, directory: directory, megabytes: 1)
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
                XCTFail("watcher:\n\(read(jsonLog))")
                throw error
            }
        }
    }
}
