public import Foundation

extension NetworkLab {
    /// Waits until `host` has a TCP socket listening on `port` (with `udp`, a UDP socket
    /// bound to it); with `sockets`, that many (a server that binds each family apart).
    public func waitForListener(_ host: Host, port: UInt16, udp: Bool = false, sockets: Int = 1, timeout: TimeInterval = 10) throws {
        try Self.poll("\(sockets) listener(s) on \(host.namespace) port \(port)\(udp ? "/udp" : "")", timeout: timeout) {
            let output = try? run(host, ["ss", udp ? "-Hlun" : "-Hltn", "sport = :\(port)"], timeout: 5)
            return (output?.standardOutput.split(separator: "\n").count ?? 0) >= sockets
        }
    }

    /// Waits until the file at `path` contains `text` (a process announcing it is ready).
    public static func waitForText(_ text: String, inFile path: String, timeout: TimeInterval = 10) throws {
        try poll("\"\(text)\" in \(path)", timeout: timeout) {
            ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").contains(text)
        }
    }

    /// Polls `condition` every 50 ms until it holds, or throws after `timeout` seconds.
    public static func poll(_ what: String, timeout: TimeInterval, _ condition: () -> Bool) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while !condition() {
            guard Date() < deadline else { throw CommandError.timedOut("waiting for \(what)", timeout) }
            usleep(50_000)
        }
    }

    /// Writes `count` random bytes to `path`, read from the kernel's /dev/urandom a megabyte
    /// at a time (a byte loop in a debug build took 38 s for 200 MB, most of a restart test).
    public static func makeRandomFile(_ path: String, count: Int) throws {
        guard let random = FileHandle(forReadingAtPath: "/dev/urandom") else {
            throw CommandError.failed("open /dev/urandom", 1, "cannot read /dev/urandom")
        }
        defer { try? random.close() }
        guard FileManager.default.createFile(atPath: path, contents: nil),
              let file = FileHandle(forWritingAtPath: path) else {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: path])
        }
        defer { try? file.close() }
        var left = count
        while left > 0 {
            let chunk = try random.read(upToCount: min(left, 1 << 20)) ?? Data()
            guard !chunk.isEmpty else { throw CocoaError(.fileReadUnknown, userInfo: [NSFilePathErrorKey: "/dev/urandom"]) }
            try file.write(contentsOf: chunk)
            left -= chunk.count
        }
    }

    /// sha256 of a file, by coreutils' sha256sum (an independent implementation).
    public static func sha256(_ path: String) throws -> String {
        let output = try Command.checked(["sha256sum", path])
        return String(output.standardOutput.prefix(64))
    }

    /// `iptables-save` and `ip6tables-save` of `host`, without comments (timestamps) and
    /// packet counters: every table, chain and rule, comparable before and after.
    public func ruleset(_ host: Host) throws -> String {
        // nft's table list too: the kernel datapath's table inet vpm is not iptables'.
        let text = try checked(host, ["iptables-save"]).standardOutput + (try checked(host, ["ip6tables-save"]).standardOutput)
            + (try checked(host, ["nft", "list", "tables"]).standardOutput)
        return text.split(separator: "\n").filter { !$0.hasPrefix("#") }
            .map { $0.replacingOccurrences(of: #"\[\d+:\d+\]"#, with: "", options: .regularExpression) }
            .joined(separator: "\n")
    }
}
