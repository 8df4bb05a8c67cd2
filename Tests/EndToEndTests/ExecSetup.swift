import Control
import Foundation
import NetworkLab
import TestSupport
import XCTest

/// A lab with a running engine for `vpm exec` tests (ExecTests, DaemonTests).
struct ExecSetup {
    var lab: NetworkLab
    var engine: EngineRun
    var directory: String
    var vpm: String

    /// `vpm exec --aid AID -- arguments` on the server host; its output goes to LOG.
    func exec(_ aid: String, _ arguments: [String], log: String) throws -> BackgroundProcess {
        try lab.spawn(lab.server, [vpm, "exec", "--aid", aid, "--config", engine.configurationPath,
                                   "--socket", engine.socketPath, "--"] + arguments, log: "\(directory)/\(log)")
    }

    func apps() throws -> [AppRecord] {
        try JSONDecoder().decode([AppRecord].self, from: Data(try Command.checked(
            [vpm, "apps", "--json", "--socket", engine.socketPath]).standardOutput.utf8))
    }

    func text(_ name: String) -> String {
        (try? String(contentsOfFile: "\(directory)/\(name)", encoding: .utf8)) ?? ""
    }
}

extension XCTestCase {
    func withExecEngine(_ tag: String, configuration: String = ExecTests.configuration(), _ body: (ExecSetup) throws -> Void) throws {
        try Privileged.requireRoot()
        let lab = try NetworkLab(name: Privileged.labName(tag), clientAddresses: ["198.18.1.2", "198.18.2.2", "198.18.3.2"])
        defer { lab.tearDown() }
        let directory = Privileged.scratchDirectory(tag)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let vpm = try Privileged.vpmExecutable()
        let engine = try Privileged.engine(lab: lab, vpmExecutable: vpm, directory: directory, configuration: configuration)
        try engine.start()
        defer { _ = engine.stop() }
        let setup = ExecSetup(lab: lab, engine: engine, directory: directory, vpm: vpm)
        do { try body(setup) } catch {
            XCTFail("engine log:\n\(engine.log)\nstats:\n\((try? engine.stats().standardOutput) ?? "")\napps:\n\((try? engine.apps().standardOutput) ?? "")")
            throw error
        }
    }
}
