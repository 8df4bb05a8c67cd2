import ArgumentParser
import Control
import Foundation
import Policy

struct Exec: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run an unmodified program as an instance of an AID.",
        discussion: """
            The program's bind() to a multiplexed initial port (say 9000) really binds the \
            virtual port the engine allocates for its AID, and getsockname() still reports \
            9000, so the program only ever sees 9000. It is done by a small library loaded \
            with LD_PRELOAD (libvpm-preload.so), so statically linked programs cannot be run \
            this way; vpm exec refuses them. The AID comes from --aid, or from the \
            configuration's `executables:` lists. The engine (`vpm run`) must be running.
            """)

    @Option(help: "The AID the program runs as.") var aid: String?
    @Option(name: .shortAndLong, help: "Configuration file (for the multiplexed ports and AIDs).") var config = "/etc/vpm/vpm.yaml"
    @Option(help: "The engine's control socket.") var socket = ControlSocket.defaultPath
    @Option(help: "The interception library (default: $VPM_PRELOAD, else next to the vpm executable, else PREFIX/lib/vpm/ of an installed vpm).") var preload: String?
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
        let aid: AID
        if let name = self.aid {
            guard let valid = AID(name) else { throw ValidationError(AID.problem(with: name) ?? "'\(name)' is not an AID") }
            aid = valid
        } else if let application = configuration.application(executable: resolved) {
            aid = application.aid
        } else {
            throw Failure("no AID for \(resolved): pass --aid, or list it under an application's `executables:` in \(config)")
        }
        guard configuration.application(aid) != nil else {
            let known = configuration.applications.map(\.aid.name).joined(separator: ", ")
            throw Failure("AID '\(aid)' is not in \(config) (its applications: \(known)); add it there and restart `vpm run`")
        }
        if let problem = ExecutableKind.problem(path: resolved) { throw Failure(problem) }
        let library = try preloadLibrary()

        var environment = ProcessInfo.processInfo.environment
        environment["LD_PRELOAD"] = [library, environment["LD_PRELOAD"]].compactMap { $0 }.filter { !$0.isEmpty }.joined(separator: ":")
        environment["VPM_AID"] = aid.name
        environment["VPM_SOCKET"] = socket
        environment["VPM_PORTS"] = configuration.initialPorts.map(\.description).joined(separator: ",")
        // How long the library waits for the engine's answer: a bind may wait for a free port.
        let wait = configuration.allocation.whenExhausted == .wait ? Int(configuration.allocation.waitTimeout) : 0
        environment["VPM_TIMEOUT"] = "\(wait + 5)"
        try Self.replaceProcess(path: path, arguments: command, environment: environment)
    }

    private func preloadLibrary() throws -> String {
        let executableDirectory = URL(fileURLWithPath: Bundle.main.executablePath ?? CommandLine.arguments[0])
            .resolvingSymlinksInPath().deletingLastPathComponent()
        // Beside the binary (a build tree), or where `make install` puts it for any PREFIX:
        // PREFIX/bin/vpm and PREFIX/lib/vpm/libvpm-preload.so; last, the default PREFIX's.
        let beside: String = executableDirectory.appendingPathComponent("libvpm-preload.so").path
        let installed: String = executableDirectory.deletingLastPathComponent()
            .appendingPathComponent("lib/vpm/libvpm-preload.so").path
        let candidates = [preload, ProcessInfo.processInfo.environment["VPM_PRELOAD"], beside, installed,
                          "/usr/local/lib/vpm/libvpm-preload.so"].compactMap { $0 }
        guard let found = candidates.first(where: { FileManager.default.isReadableFile(atPath: $0) }) else {
            throw Failure("the interception library libvpm-preload.so is missing (looked in \(candidates.joined(separator: ", "))); build it with `make`")
        }
        return URL(fileURLWithPath: found).standardizedFileURL.path
    }

    /// A path as given, or the first match on PATH.
    static func resolve(_ program: String) -> String? {
        if program.contains("/") { return FileManager.default.isExecutableFile(atPath: program) ? program : nil }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        return path.split(separator: ":").map { "\($0)/\(program)" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// execve: the program takes over this process (same pid, signals go straight to it).
    static func replaceProcess(path: String, arguments: [String], environment: [String: String]) throws -> Never {
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        execve(path, argv, envp)
        throw Failure("cannot run \(path): \(String(cString: strerror(errno)))")
    }
}

/// Tells statically linked executables (which LD_PRELOAD cannot reach) from dynamic ones.
enum ExecutableKind {
    /// Why `path` cannot be run under `vpm exec`, or nil when it can.
    static func problem(path: String) -> String? {
        guard let handle = FileHandle(forReadingAtPath: path) else { return "cannot read \(path)" }
        defer { try? handle.close() }
        let header = handle.readData(ofLength: 64)
        // Scripts run their interpreter, which is checked by the loader as usual.
        if header.starts(with: Array("#!".utf8)) { return nil }
        guard header.count >= 64, header.starts(with: [0x7F, 0x45, 0x4C, 0x46]) else {
            return "\(path) is neither an ELF executable nor a script"
        }
        guard header[4] == 2, header[5] == 1 else { return nil }  // only 64-bit little-endian is inspected
        func integer<T: FixedWidthInteger>(_ data: Data, _ offset: Int, _: T.Type) -> T {
            data.subdata(in: offset..<offset + MemoryLayout<T>.size).withUnsafeBytes { $0.loadUnaligned(as: T.self) }
        }
        let programHeaders = Int(integer(header, 32, UInt64.self))
        let entrySize = Int(integer(header, 54, UInt16.self))
        let count = Int(integer(header, 56, UInt16.self))
        guard entrySize >= 4, count > 0, count < 4096 else { return nil }
        try? handle.seek(toOffset: UInt64(programHeaders))
        let table = handle.readData(ofLength: entrySize * count)
        let interpreter: UInt32 = 3  // PT_INTERP: the dynamic loader that honours LD_PRELOAD
        for index in 0..<count where table.count >= (index + 1) * entrySize {
            if integer(table, index * entrySize, UInt32.self) == interpreter { return nil }
        }
        return "\(path) is statically linked: LD_PRELOAD cannot intercept its bind(), so it would bind the real port. "
            + "Run a dynamically linked build of it (a seccomp-based interceptor may come later)."
    }
}
