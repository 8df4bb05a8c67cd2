import ArgumentParser
import Control
import Foundation
import Interception
import Policy

struct Exec: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run an unmodified program as an instance of an AID.",
        discussion: """
            The program's bind() to a multiplexed initial port (say 9000) really binds the \
            virtual port the engine allocates for its AID, and getsockname() still reports \
            9000, so the program only ever sees 9000. A supervisor process answers those calls \
            (seccomp user notification) for the program and every process it starts, in any \
            language, linked dynamically or statically. vpm exec forwards signals to the \
            program and exits with its status when the program's first process exits, as the \
            program would without vpm: a server that daemonizes (redis --daemonize yes, \
            nginx, pg_ctl start) returns at once, and what it left running stays an instance, \
            supervised until it exits. The AID comes from --aid, or from the configuration's \
            `executables:` lists. The engine (`vpm run`) must be running.

            With --new-aid the engine makes a fresh AID, a tenant, for this program and \
            everything it starts (the configuration's `tenants:` section says who may): its \
            servers on the tenants' ports become that tenant's instances, and its clients of \
            those ports on this host reach them. The name is printed on standard error and \
            given to the program as VPM_AID; `vpm exec --aid NAME` joins the tenant from \
            elsewhere (its owner only). The tenant ends when the last process of every vpm \
            exec that made or joined it has exited.
            """)

    @Option(help: "The AID the program runs as: a configured application, or a live tenant to join.") var aid: String?
    @Flag(name: .customLong("new-aid"), help: "Make a fresh AID (a tenant) for this program and everything it starts.") var newAID = false
    @Option(name: .shortAndLong, help: "Configuration file (for the multiplexed ports and AIDs).") var config = "/etc/vpm/vpm.yaml"
    @Option(help: "The engine's control socket.") var socket = ControlSocket.defaultPath
    @Argument(parsing: .captureForPassthrough, help: "-- COMMAND [ARGUMENTS...]") var command: [String] = []

    func run() throws {
        var command = self.command
        if command.first == "--" { command.removeFirst() }
        guard let program = command.first else {
            throw ValidationError("give the program to run after --, e.g. vpm exec --aid acme -- nginx")
        }
        let configuration: Configuration
        do { configuration = try Configuration.load(path: config) } catch { throw Failure("\(error)") }
        guard let path = Self.resolve(program) else {
            throw Failure("\(program): no such program (not a path, and not found on PATH)")
        }
        let resolved = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
        if newAID && self.aid != nil {
            throw ValidationError("give --aid NAME (run as, or join, that AID) or --new-aid (make a tenant), not both")
        }
        let aid: AID
        var tenant = false
        if newAID {
            guard let tenants = configuration.tenants else {
                throw Failure("\(config) has no tenants: section, so the engine makes no tenants; add one (docs/instances.md, \"Parallel test jobs on one host\")")
            }
            aid = try Self.tenant(nil, socket: socket)
            tenant = true
            FileHandle.standardError.write(Data("vpm: tenant \(aid) (ports \(tenants.ports.map(\.description).joined(separator: ", ")))\n".utf8))
        } else if let name = self.aid {
            guard let valid = AID(name) else { throw ValidationError(AID.problem(with: name) ?? "'\(name)' is not an AID") }
            aid = valid
        } else if let application = configuration.application(executable: resolved) {
            aid = application.aid
        } else {
            throw Failure("no AID for \(resolved): pass --aid, or list it under an application's `executables:` in \(config)")
        }
        if !tenant && configuration.application(aid) == nil {
            guard configuration.tenants != nil else {
                let known = configuration.applications.map(\.aid.name).joined(separator: ", ")
                throw Failure("AID '\(aid)' is not in \(config) (its applications: \(known)); add it there and restart `vpm run`")
            }
            // Not configured: a tenant to join.
            _ = try Self.tenant(aid, socket: socket)
            tenant = true
        }
        // How long a bind waits for the engine's answer: a bind may wait for a free port.
        let wait = configuration.allocation.whenExhausted == .wait ? Int(configuration.allocation.waitTimeout) : 0
        var settings = InterceptionSettings(aid: aid, configuration: configuration, socketPath: socket,
                                            answerTimeoutSeconds: wait + 5)
        // Every multiplexed port stays intercepted: a tenant's bind of a port tenants may not
        // use is refused by the engine (EACCES), not let through to the real port.
        settings.joinsTenant = tenant
        var environment = ProcessInfo.processInfo.environment
        environment["VPM_AID"] = aid.name
        settings.debug = environment["VPM_DEBUG"].map { !$0.isEmpty && $0 != "0" } ?? false
        let status: Int32
        do {
            status = try Supervisor.run(path: path, arguments: command, environment: environment, settings: settings)
        } catch { throw Failure("\(error)") }
        throw ExitCode(status)
    }

    /// Makes a tenant (`aid` nil) or joins one; this process holds it until it exits.
    static func tenant(_ aid: AID?, socket: String) throws -> AID {
        var request = ControlRequest(.tenant)
        request.aid = aid?.name
        let response: ControlResponse
        do { response = try ControlSocket.send(request, to: socket, timeoutSeconds: 5) } catch {
            throw Failure("cannot \(aid.map { "join tenant \($0)" } ?? "make a tenant"): \(error)")
        }
        guard let name = response.aid, let made = AID(name) else {
            throw Failure("cannot \(aid.map { "run as \($0)" } ?? "make a tenant"): \(response.error ?? "the engine gave no AID")")
        }
        return made
    }

    /// A path as given, or the first match on PATH.
    static func resolve(_ program: String) -> String? {
        if program.contains("/") { return FileManager.default.isExecutableFile(atPath: program) ? program : nil }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        return path.split(separator: ":").map { "\($0)/\(program)" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }
}
