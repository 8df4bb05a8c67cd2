import ArgumentParser
import Control
import Foundation

struct Apps: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the running engine's instances: AID, initial → virtual port, processes, connections.")

    @Option(help: "Control socket path.") var socket = ControlSocket.defaultPath
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        let response: ControlResponse
        do { response = try ControlSocket.send(ControlRequest(.apps), to: socket) } catch { throw Failure("\(error)") }
        if let error = response.error { throw Failure("the engine says: \(error)") }
        let apps = (response.applications ?? []).sorted { ($0.aid, $0.initialPort) < ($1.aid, $1.initialPort) }
        if json {
            try printJSON(apps)
        } else {
            print(AppRecord.table(apps), terminator: "")
        }
        log("\(apps.count) instance\(apps.count == 1 ? "" : "s")")
    }
}
