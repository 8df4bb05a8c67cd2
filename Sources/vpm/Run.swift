import ArgumentParser
import Control
import Engine
import Logging
import Foundation
import Policy

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the engine (as root): install the rules, multiplex, remove the rules on exit.",
        discussion: """
            Loads the configuration, binds the NFQUEUE queues, installs the VPM-* chains (and, \
            for the kernel and socket datapaths, the nft table inet vpm; for the socket datapath, \
            the table inet vpm_socket and the sk_lookup program), and serves the control socket \
            that `vpm flows` and `vpm stats` read. SIGHUP (or `vpm reload`) reads the \
            configuration again. SIGINT or SIGTERM stop it: the rules and \
            the socket are removed on the way out (also when start-up fails half-way), and \
            the multiplexed connections end, unless --keep-connections. See docs/datapaths.md.
            """)

    @Option(name: .shortAndLong, help: "Configuration file (see docs/configuration.md).") var config: String
    @Option(help: "Control socket path.") var socket = ControlSocket.defaultPath
    @Flag(inversion: .prefixedNo, help: "Receive GSO super-packets (NFQA_CFG_F_GSO).") var gso = true
    @Flag(help: "Do not install or remove rules (install them yourself: `vpm rules print`).") var noRules = false
    @Flag(help: "Accept packets instead of dropping them when the kernel queue is full.") var failOpen = false
    @Option(help: "Log level: trace, debug, info, notice, warning, error.") var logLevel = "info"
    @Option(help: "Log lines: text, logfmt, json (one object per line) or journal (syslog priority prefixes for journald; the default under systemd, text elsewhere).")
    var logFormat: String?
    @Option(help: "socket (default): a BPF sk_lookup program hands source-routed TCP connections to their instance's socket, untranslated and untracked, and the rest goes as on kernel; kernel: the engine decides each connection's first packet and kernel NAT carries the rest; userspace: every packet through the engine (docs/datapaths.md). socket falls back to kernel, and kernel to userspace, saying why, where the kernel cannot run them.")
    var datapath = Datapath.socket.rawValue
    @Flag(help: "On SIGINT/SIGTERM leave the rules (and, kernel datapath, the NAT table and conntrack's entries) in place, so established connections survive and the next `vpm run` takes them over: kernel NAT keeps carrying them, or (userspace datapath) they wait, their packets dropped, until the next engine restores their flows.")
    var keepConnections = false
    @Flag(help: "Run even though the configuration file holds cooperative keys that users other than root can read or change (a warning is logged instead).")
    var allowExposedKeys = false

    func run() throws {
        let configuration: Configuration
        do { configuration = try Configuration.load(path: config) } catch { throw Failure("\(error)") }
        guard let level = Logger.Level(rawValue: logLevel) else {
            throw ValidationError("--log-level must be one of \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let format: StructuredLogHandler.Format
        if let logFormat {
            guard let chosen = StructuredLogHandler.Format(rawValue: logFormat) else {
                throw ValidationError("--log-format must be one of \(StructuredLogHandler.Format.allCases.map(\.rawValue).joined(separator: ", ")), not '\(logFormat)'")
            }
            format = chosen
        } else {
            format = .automatic()
        }
        if let problem = Engine.privilegeProblem() { throw Failure(problem) }
        let exposure = configuration.keysExposure(path: config)
        if let exposure, !allowExposedKeys { throw Failure(exposure) }
        var options = Engine.Options(configuration: configuration)
        // Absolute: `vpm reload` reads it again whatever the engine's directory is then.
        options.configurationPath = config.hasPrefix("/") ? config : FileManager.default.currentDirectoryPath + "/" + config
        options.socketPath = socket
        options.installRules = !noRules
        options.segmentationOffload = gso
        options.failOpen = failOpen
        options.datapath = try Datapath(argument: datapath)
        options.keepConnections = keepConnections
        do {
            LoggingSystem.bootstrap { _ in StructuredLogHandler(format: format) }
            var logger = Logger(label: "vpm")
            logger.logLevel = level
            if let exposure { logger.warning("running with exposed keys (--allow-exposed-keys)", metadata: ["problem": "\(exposure)"]) }
            try Engine(options: options, logger: logger).run()
        } catch {
            throw Failure("\(error)")
        }
    }
}

extension Datapath {
    /// `--datapath`, with the choices in the error.
    init(argument: String) throws {
        guard let value = Datapath(rawValue: argument) else {
            throw ValidationError("--datapath must be one of \(Datapath.allCases.map(\.rawValue).joined(separator: ", ")), not '\(argument)'")
        }
        self = value
    }
}
