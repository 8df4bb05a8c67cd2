import ArgumentParser
import Control
import Foundation

struct Apps: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the running engine's instances: AID, initial → virtual port, processes, connections.",
        discussion: """
            With --fleet, every instance of the fleet instead (docs/fleet.md): AID, port, the engine \
            that serves it and its addresses, as the engine's view of the etcd directory has them \
            (its last view while etcd is unreachable, which it then says).
            """)

    @Option(help: "Control socket path.") var socket = ControlSocket.defaultPath
    @Flag(help: "Print JSON.") var json = false
    @Flag(help: "Every instance of the fleet, on every host.") var fleet = false

    func run() throws {
        var request = ControlRequest(.apps)
        if fleet { request.fleet = true }
        let response: ControlResponse
        do { response = try ControlSocket.send(request, to: socket) } catch { throw Failure("\(error)") }
        if let error = response.error { throw Failure("the engine says: \(error)") }
        if fleet { return try printFleet(response) }
        let apps = (response.applications ?? []).sorted { ($0.aid, $0.initialPort) < ($1.aid, $1.initialPort) }
        if json {
            try printJSON(apps)
        } else {
            print(AppRecord.table(apps), terminator: "")
        }
        log("\(apps.count) instance\(apps.count == 1 ? "" : "s")")
    }

    private func printFleet(_ response: ControlResponse) throws {
        let instances = response.fleetInstances ?? []
        if json {
            try printJSON(instances)
        } else {
            print(FleetInstanceRecord.table(instances), terminator: "")
        }
        let engines = Set(instances.map(\.engine)).count
        log("\(instances.count) instance\(instances.count == 1 ? "" : "s") on \(engines) engine\(engines == 1 ? "" : "s")")
        if let state = response.fleet, !state.connected {
            log("fleet: " + state.summary(now: Int64(Date().timeIntervalSince1970)))
        }
    }
}
