public import Foundation
public import NetworkLab
import XCTest

extension Privileged {
    /// One tenant, one instance: acme's clients come from 198.18.1.0/24 and 2001:db8:0:1::/64,
    /// its instance (socat, writing what it receives to DIRECTORY/received) listens on virtual
    /// port 20017, both families.
    public static let acmeConfiguration = """
        virtual-ports: 20000-20999
        ports: [9000]
        applications:
          acme:
            instances: {9000: 20017}
        sources:
          - {from: 198.18.1.0/24, aid: acme}
          - {from: 2001:db8:0:1::/64, aid: acme}

        """

    /// A lab with acme's client (198.18.1.2, `lab.clients[0]`) and a client of no AID
    /// (198.18.9.9), acme's instance, and the engine running `acmeConfiguration` plus
    /// `extraConfiguration`; `beforeStart` runs just before `vpm run`. Everything is removed
    /// afterwards; a failing body prints the engine's log.
    public static func withAcmeEngine(
        _ tag: String, extraConfiguration: String = "", engineArguments: [String] = [],
        beforeStart: (NetworkLab, EngineRun, String) throws -> Void = { _, _, _ in },
        _ body: (NetworkLab, EngineRun, String) throws -> Void
    ) throws {
        try requireRoot()
        let lab = try NetworkLab(name: labName(tag), clientAddresses: ["198.18.1.2", "198.18.9.9"])
        defer { lab.tearDown() }
        let directory = scratchDirectory(tag)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let engine = try engine(lab: lab, vpmExecutable: try vpmExecutable(), directory: directory,
                                configuration: acmeConfiguration + extraConfiguration)
        _ = try lab.spawn(lab.server, ["socat", "-u", "TCP6-LISTEN:20017,ipv6only=0,reuseaddr", "CREATE:\(directory)/received"],
                          log: "\(directory)/instance.log")
        try lab.waitForListener(lab.server, port: 20017)
        try beforeStart(lab, engine, directory)
        try engine.start(engineArguments)
        defer { _ = engine.stop() }
        do { try body(lab, engine, directory) } catch {
            XCTFail("engine log:\n\(engine.log)")
            throw error
        }
    }

    /// `megabytes` of random bytes from acme's client to the initial port, waiting until the
    /// instance has them whole (sha256).
    public static func uploadToAcme(_ lab: NetworkLab, directory: String, megabytes: Int) throws {
        try NetworkLab.makeRandomFile("\(directory)/upload", count: megabytes << 20)
        try lab.checked(lab.clients[0], ["socat", "-u", "OPEN:\(directory)/upload", "TCP:\(lab.server.address):9000"], timeout: 60)
        try NetworkLab.poll("the upload to arrive whole", timeout: 10) {
            (try? NetworkLab.sha256("\(directory)/received")) == (try? NetworkLab.sha256("\(directory)/upload"))
        }
    }
}
