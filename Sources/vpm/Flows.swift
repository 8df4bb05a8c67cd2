import ArgumentParser
import Control
import Foundation

struct Flows: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the running engine's translations, one flow per line.",
        discussion: "Aligned columns for people, --json for programs. The flow count goes to stderr.")

    @Option(help: "Control socket path.") var socket = ControlSocket.defaultPath
    @Flag(help: "Print JSON (an array of flows).") var json = false
    @Option(help: "Only flows of this AID.") var aid: String?
    @Option(help: "Only flows with this initial or virtual port.") var port: UInt16?
    @Option(help: "Only flows in this state (opening, established, closing, closed, udp, udpStream).") var state: String?

    func run() throws {
        let response: ControlResponse
        do { response = try ControlSocket.send(ControlRequest(.flows), to: socket) } catch { throw Failure("\(error)") }
        if let error = response.error { throw Failure("the engine says: \(error)") }
        let flows = (response.flows ?? []).filter { flow in
            (aid == nil || flow.aid == aid)
                && (port == nil || flow.initialPort == port || flow.virtualPort == port)
                && (state == nil || flow.state == state)
        }.sorted { ($0.aid, $0.client, $0.clientPort) < ($1.aid, $1.client, $1.clientPort) }
        if json {
            try printJSON(flows)
        } else {
            print(FlowRecord.table(flows), terminator: "")
        }
        log("\(flows.count) flow\(flows.count == 1 ? "" : "s")")
    }
}
