import Foundation
public import NetworkLab

/// A real TCP transfer through `vpm translate` between the lab's two hosts, both ways:
/// the server listens on the virtual port, the client dials the initial port, socat
/// carries the bytes, sha256sum checks them. Used by `vpm demo` and the privileged tests.
public struct TranslationRun {
    public struct Result: Sendable {
        public var bytes: Int
        public var uploadSent: String
        public var uploadReceived: String
        public var downloadSent: String
        public var downloadReceived: String
        /// The engine's counters (JSON printed on exit).
        public var engineReport: String
        public var engineLog: String
        /// iptables-save in the server namespace after the engine stopped.
        public var rulesAfterStop: String
        public var intact: Bool { uploadSent == uploadReceived && downloadSent == downloadReceived }
    }

    public var vpmExecutable: String
    public var initialPort: UInt16 = 9000
    public var virtualPort: UInt16 = 20017
    public var bytes = 10 << 20
    public var segmentationOffload = true
    public var queue: UInt16 = 0
    /// Extra commands run in the server namespace before the engine starts.
    public var serverSetup: [[String]] = []
    public var clientSetup: [[String]] = []

    public init(vpmExecutable: String) { self.vpmExecutable = vpmExecutable }

    public func run(in lab: NetworkLab, directory: String) throws -> Result {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        for command in serverSetup { try lab.checked(lab.server, command) }
        for command in clientSetup { try lab.checked(lab.client, command) }
        let path = { (name: String) in "\(directory)/\(name)" }
        try NetworkLab.makeRandomFile(path("upload"), count: bytes)
        try NetworkLab.makeRandomFile(path("download"), count: bytes)

        var engine = [vpmExecutable, "translate", "--queue", "\(queue)",
                      "--initial-port", "\(initialPort)", "--virtual-port", "\(virtualPort)",
                      "--install-rules", "--stats-file", path("engine.json")]
        if !segmentationOffload { engine.append("--no-gso") }
        let engineProcess = try lab.spawn(lab.server, engine, log: path("engine.log"))
        try NetworkLab.waitForText("ready", inFile: path("engine.log"))

        let server = "\(lab.server.address)"
        // Upload: client → server.
        _ = try lab.spawn(lab.server, ["socat", "-u", "TCP-LISTEN:\(virtualPort),reuseaddr",
                                       "CREATE:\(path("upload.received"))"], log: path("upload-server.log"))
        try lab.waitForListener(lab.server, port: virtualPort)
        try lab.checked(lab.client, ["socat", "-u", "FILE:\(path("upload"))", "TCP:\(server):\(initialPort)"], timeout: 60)
        // Download: server → client.
        try NetworkLab.poll("the upload listener to finish", timeout: 10) {
            (try? lab.run(lab.server, ["ss", "-Hltn", "sport = :\(virtualPort)"], timeout: 5).standardOutput.isEmpty) ?? false
        }
        _ = try lab.spawn(lab.server, ["socat", "-u", "FILE:\(path("download"))",
                                       "TCP-LISTEN:\(virtualPort),reuseaddr"], log: path("download-server.log"))
        try lab.waitForListener(lab.server, port: virtualPort)
        try lab.checked(lab.client, ["socat", "-u", "TCP:\(server):\(initialPort)",
                                     "CREATE:\(path("download.received"))"], timeout: 60)

        lab.stop(engineProcess)
        let rules = try lab.run(lab.server, ["iptables-save"]).standardOutput
            + (try lab.run(lab.server, ["ip6tables-save"]).standardOutput)
        // The upload server may still be flushing its file when the client exits.
        try NetworkLab.poll("the upload file", timeout: 10) {
            ((try? FileManager.default.attributesOfItem(atPath: path("upload.received"))[.size] as? Int) ?? 0) >= bytes
        }
        return Result(
            bytes: bytes,
            uploadSent: try NetworkLab.sha256(path("upload")),
            uploadReceived: try NetworkLab.sha256(path("upload.received")),
            downloadSent: try NetworkLab.sha256(path("download")),
            downloadReceived: try NetworkLab.sha256(path("download.received")),
            engineReport: (try? String(contentsOfFile: path("engine.json"), encoding: .utf8)) ?? "",
            engineLog: (try? String(contentsOfFile: path("engine.log"), encoding: .utf8)) ?? "",
            rulesAfterStop: rules)
    }
}
