import ArgumentParser
import Control

struct Reload: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make the running engine read its configuration file again (as root).",
        discussion: """
            Applies what can change without touching a flow: `sources` (which clients belong \
            to which AID), `flows.timeouts`, and applications added, removed or given other \
            users (an application that still has instances is not removed). Established \
            connections keep their instance; new ones follow the new rules. A file that does \
            not load, or that changes anything else (ports, an application's static \
            instances, virtual-ports, cooperative, …), changes nothing: the \
            engine keeps running as it was, and this command fails saying what to do. SIGHUP \
            does the same (the result is in the engine's log). The systemd unit's ExecReload.
            """)

    @Option(help: "Control socket path.") var socket = ControlSocket.defaultPath

    func run() throws {
        let response: ControlResponse
        do { response = try ControlSocket.send(ControlRequest(.reload), to: socket) } catch { throw Failure("\(error)") }
        if let error = response.error { throw Failure("the engine says: \(error)") }
        print(response.message ?? "reloaded")
    }
}
