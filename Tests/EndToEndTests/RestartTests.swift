import Control
import Foundation
import NetworkLab
import TestSupport
import XCTest

/// The engine restarts in the middle of a 200 MB transfer — killed (SIGKILL), or stopped with
/// `--keep-connections` (an upgrade) — and the transfer completes whole (sha256): the kernel
/// datapath's connections keep running in kernel NAT; the userspace datapath's wait, their
/// packets dropped, and the next engine restores their flows from the snapshot its
/// predecessor wrote. Cooperative mode: CooperativeTests.testBothEnginesRestartMidTransfer.
final class RestartTests: XCTestCase {
    /// Sends FILE to HOST:PORT in 64 KiB pieces, 2 ms apart (at most about 30 MB/s, so a
    /// 200 MB transfer is still running across a restart), then reads what the other side
    /// sends until it closes.
    static let pacedSender = """
        import socket, sys, time
        host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
        data = open(path, "rb").read()
        s = socket.create_connection((host, port), timeout=60)
        for offset in range(0, len(data), 65536):
            s.sendall(data[offset:offset + 65536])
            time.sleep(0.002)
        s.shutdown(socket.SHUT_WR)
        # Read to the end: closing with unread data would reset the connection, and the
        # kernel would drop what the send buffer still held.
        while s.recv(65536):
            pass
        s.close()
        print("sent", len(data))
        """

    /// Waits until `path` has `bytes`, then long enough for the engine to have saved its flows.
    static func waitForTransferUnderway(_ path: String, bytes: Int) throws {
        try NetworkLab.poll("the transfer to be under way", timeout: 20) {
            ((try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0) >= bytes
        }
        Thread.sleep(forTimeInterval: 1.5)  // the userspace datapath saves each second in which flows came
    }

    func restartMidTransfer(_ tag: String, arguments: [String], family: NetworkLab.AddressFamily,
                            restart: (EngineRun) throws -> Void) throws {
        try Privileged.withAcmeEngine(tag, engineArguments: arguments) { lab, engine, directory in
            let upload = "\(directory)/upload", received = "\(directory)/received"
            try NetworkLab.makeRandomFile(upload, count: 200 << 20)
            try Self.pacedSender.write(toFile: "\(directory)/sender.py", atomically: true, encoding: .utf8)
            let sending = try lab.spawn(lab.clients[0], ["python3", "\(directory)/sender.py", lab.server.address(family), "9000", upload],
                                        log: "\(directory)/sender.log")
            try Self.waitForTransferUnderway(received, bytes: 1 << 20)
            try restart(engine)
            try engine.start(arguments)
            if Privileged.datapath == "userspace" {
                XCTAssertTrue(engine.log.contains("flows restored from the last engine"), engine.log)
            }
            let flows = try JSONDecoder().decode([FlowRecord].self, from: Data(try engine.flows(json: true).standardOutput.utf8))
            XCTAssertTrue(flows.contains { $0.client == lab.clients[0].address(family) && $0.aid == "acme" }, "the restarted engine lists the flow: \(flows)")
            try NetworkLab.poll("the transfer to finish", timeout: 120) { !sending.isRunning }
            XCTAssertEqual(sending.terminationStatus, 0, (try? String(contentsOfFile: "\(directory)/sender.log", encoding: .utf8)) ?? "")
            try NetworkLab.poll("the upload to arrive whole", timeout: 30) {
                (try? NetworkLab.sha256(received)) == (try? NetworkLab.sha256(upload))
            }
        }
    }

    /// Over IPv6 (the other test: IPv4).
    func testAKilledEngineIsRestartedMidTransfer() throws {
        try restartMidTransfer("restart-kill", arguments: [], family: .ipv6) { $0.kill() }
    }

    func testAnEngineStoppedWithKeepConnectionsIsRestartedMidTransfer() throws {
        try restartMidTransfer("restart-keep", arguments: ["--keep-connections"], family: .ipv4) { engine in
            XCTAssertEqual(engine.stop(), 0)
            XCTAssertTrue(engine.log.contains("--keep-connections"), engine.log)
        }
    }
}
