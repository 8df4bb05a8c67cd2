import ArgumentParser
import Control

struct RotateKey: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rotate-key",
        abstract: "Give the running engine a new fleet key pair (as root; docs/fleet.md).",
        discussion: """
            Writes a new X25519 key to fleet: key-file and publishes its public half in the \
            directory, the previous one beside it for one lease: peers derive the new \
            negotiation keys as they see the entry, and requests signed with the previous key \
            are still honoured meanwhile, so no connection is refused. Then the previous key \
            is withdrawn and forgotten.
            """)

    @Option(help: "Control socket path.") var socket = ControlSocket.defaultPath

    func run() throws {
        let response: ControlResponse
        do { response = try ControlSocket.send(ControlRequest(.rotateKey), to: socket) } catch { throw Failure("\(error)") }
        if let error = response.error { throw Failure("the engine says: \(error)") }
        print(response.message ?? "rotated")
    }
}
