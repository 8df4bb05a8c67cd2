public import Foundation
public import NetworkLab
import XCTest

/// Shared set-up of the tests that need root: they make their own namespaces and rules.
public enum Privileged {
    /// Skips (with the reason printed) when not root; in CI everything runs as root.
    public static func requireRoot() throws {
        guard geteuid() == 0 else {
            throw XCTSkip("needs root (network namespaces, iptables, NFQUEUE): run `sudo make test`")
        }
        for tool in ["ip", "iptables", "socat", "ss", "sha256sum", "ethtool"] where !Command.exists(tool) {
            XCTFail("\(tool) is missing: `make test` installs it (see Makefile)")
        }
    }

    /// The vpm executable built by `make test` (VPM_BINARY), or the debug build next to the package.
    public static func vpmExecutable() throws -> String {
        let candidates = [ProcessInfo.processInfo.environment["VPM_BINARY"]].compactMap { $0 }
            + [packageRoot.appendingPathComponent(".build/debug/vpm").path]
        guard let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            XCTFail("vpm executable not found (tried \(candidates)); run `swift build` first")
            throw XCTSkip("no vpm executable")
        }
        return found
    }

    /// The package's root folder (this file is Tests/TestSupport/Privileged.swift).
    public static var packageRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    /// A unique, short namespace prefix per test (names are limited to 15 characters on links,
    /// not on namespaces, but short names read better in `ip netns`).
    public static func labName(_ tag: String) -> String { "vpmt-\(tag)-\(getpid())" }

    /// An engine for a test, on the datapath the suite runs with (`VPM_TEST_DATAPATH`).
    public static func engine(lab: NetworkLab, vpmExecutable: String, directory: String, configuration: String,
                              host: NetworkLab.Host? = nil) throws -> EngineRun {
        let engine = try EngineRun(lab: lab, vpmExecutable: vpmExecutable, directory: directory, configuration: configuration,
                                   host: host)
        let chosen = ProcessInfo.processInfo.environment["VPM_TEST_DATAPATH"] ?? ""
        engine.datapath = chosen.isEmpty ? nil : chosen
        return engine
    }

    /// The datapath the end-to-end tests run the engine with (`VPM_TEST_DATAPATH`, passed
    /// by `engine(…)`): scripts/test.sh runs them once with each.
    public static var datapath: String {
        let value = ProcessInfo.processInfo.environment["VPM_TEST_DATAPATH"] ?? ""
        return value.isEmpty ? "socket" : value  // the engine's default
    }

    /// The kernel and socket datapaths: source-routed connections to an AID's instance are
    /// decided in the kernel, never queued; conntrack and NAT carry everything else.
    public static var decidesInKernel: Bool { datapath == "kernel" || datapath == "socket" }

    public static func scratchDirectory(_ tag: String) -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("vpmt-\(tag)-\(getpid())").path
    }
}
