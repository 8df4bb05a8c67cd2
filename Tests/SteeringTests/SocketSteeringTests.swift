import Foundation
import NetworkLab
import Packet
import Steering
import TestSupport
import XCTest

/// The sk_lookup program and its maps against the real kernel: namespaces the test makes,
/// real socat servers on two "virtual ports", real clients dialing port 9000.
final class SocketSteeringTests: XCTestCase {
    /// Runs `body` on a thread inside `host`'s network namespace (attach works on the
    /// calling thread's namespace).
    private final class Box: @unchecked Sendable { var result: Result<SocketSteering, Error>? }

    private func inside(_ lab: NetworkLab, _ host: NetworkLab.Host, _ body: @escaping @Sendable () throws -> SocketSteering) throws -> SocketSteering {
        let box = Box()
        let done = DispatchSemaphore(value: 0)
        let thread = Thread {
            defer { done.signal() }
            box.result = Result { try lab.enterOnCurrentThread(host); return try body() }
        }
        thread.start()
        done.wait()
        return try box.result!.get()
    }

    /// The inode of the socket listening on `port` in `host`.
    private func listener(_ lab: NetworkLab, _ host: NetworkLab.Host, port: UInt16) throws -> UInt64 {
        for _ in 0..<100 {
            let output = try lab.run(host, ["ss", "-ltnHe", "sport = :\(port)"]).standardOutput
            if let range = output.range(of: #"ino:(\d+)"#, options: .regularExpression),
               let inode = UInt64(output[range].dropFirst(4)) { return inode }
            usleep(50_000)
        }
        throw XCTSkip("no listener on \(port)")
    }

    private func dial(_ lab: NetworkLab, _ client: NetworkLab.Host) throws -> CommandOutput {
        try lab.run(client, ["socat", "-T3", "-", "TCP:198.18.0.1:9000,connect-timeout=3"], timeout: 10)
    }

    func testConnectionsReachTheSocketOfTheirClientsRuleAndNoOther() throws {
        try Privileged.requireRoot()
        let lab = try NetworkLab(name: Privileged.labName("steer"), clientAddresses: ["198.18.0.2", "198.18.0.3", "198.18.0.4"])
        defer { lab.tearDown() }
        let directory = Privileged.scratchDirectory("steer")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        // The instances: each answers with its name and the port its accepted socket is on.
        let acme = try lab.spawn(lab.server, ["socat", "TCP4-LISTEN:20000,fork,reuseaddr", "SYSTEM:echo acme $SOCAT_SOCKPORT"],
                                 log: "\(directory)/acme.log")
        let globex = try lab.spawn(lab.server, ["socat", "TCP4-LISTEN:20002,fork,reuseaddr", "SYSTEM:echo globex $SOCAT_SOCKPORT"],
                                   log: "\(directory)/globex.log")
        defer { lab.stop(acme); lab.stop(globex) }
        let acmeSlot = SteeringSlot.base(transport: .tcp, virtualPort: 20000)
        let globexSlot = SteeringSlot.base(transport: .tcp, virtualPort: 20002)
        let rules: Set<SteeringRule> = [
            SteeringRule(transport: .tcp, initialPort: 9000, network: IPAddress(198, 18, 0, 2), length: 128, clientPort: nil, slot: acmeSlot),
            SteeringRule(transport: .tcp, initialPort: 9000, network: IPAddress(198, 18, 0, 3), length: 128, clientPort: nil, slot: globexSlot),
        ]
        let steering = try inside(lab, lab.server) { try SocketSteering() }
        XCTAssertFalse(steering.tookOver)
        defer { steering.detach() }
        try steering.setPorts([SocketSteering.PortKey(transport: .tcp, port: 9000)])
        try steering.replaceRules([], with: rules)
        XCTAssertEqual(try steering.rules(), rules)
        for (process, port, slot) in [(acme, UInt16(20000), acmeSlot), (globex, 20002, globexSlot)] {
            let inode = try listener(lab, lab.server, port: port)
            let copy = try XCTUnwrap(ProcessSocket.copy(inode: inode, preferring: [process.processIdentifier]))
            try steering.setSocket(copy, slot: slot)
            XCTAssertEqual(steering.socketCookie(slot: slot), SocketSteering.cookie(of: copy))
            close(copy)
        }

        XCTAssertEqual(try dial(lab, lab.clients[0]).standardOutput, "acme 9000\n")
        XCTAssertEqual(try dial(lab, lab.clients[1]).standardOutput, "globex 9000\n")
        // No rule: refused at once, not left to time out.
        let started = Date()
        let refused = try dial(lab, lab.clients[2])
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.standardError.contains("Connection refused"), refused.standardError)
        XCTAssertLessThan(Date().timeIntervalSince(started), 2)
        // Dialing the real port directly is not this program's business (the nft guards').
        XCTAssertEqual(try lab.run(lab.clients[2], ["socat", "-T3", "-", "TCP:198.18.0.1:20000"]).standardOutput, "acme 20000\n")
        var counters = steering.counters()
        XCTAssertEqual(counters.steered, 2)
        XCTAssertEqual(counters.refusedNoRule, 1)

        // A second engine takes the pins over: the maps keep their contents, the link its place.
        let successor = try inside(lab, lab.server) { try SocketSteering() }
        XCTAssertTrue(successor.tookOver)
        XCTAssertEqual(try successor.rules(), rules)
        XCTAssertEqual(try dial(lab, lab.clients[0]).standardOutput, "acme 9000\n")
        XCTAssertEqual(successor.counters().steered, 3)

        // An instance that exits leaves the map with its socket: its clients are refused.
        lab.stop(acme)
        XCTAssertNil(successor.socketCookie(slot: acmeSlot))
        XCTAssertNotEqual(try dial(lab, lab.clients[0]).status, 0)
        counters = successor.counters()
        XCTAssertEqual(counters.refusedNoSocket, 1)
        XCTAssertEqual(try dial(lab, lab.clients[1]).standardOutput, "globex 9000\n")

        // Detached: the pins go, and port 9000 is the kernel's again (nobody listens there).
        successor.detach()
        XCTAssertFalse(FileManager.default.fileExists(atPath: successor.pinDirectory))
        let after = try dial(lab, lab.clients[1])
        XCTAssertTrue(after.standardError.contains("Connection refused"), "\(after)")
    }

    /// A socket that starts listening on an instance's port enters its slot at once, put
    /// there by the observer (sockops' listen callback), with no look of the engine's; one
    /// without the engine's mark does not, where the port asks for it.
    func testTheObserverPutsAListenerInItsSlotAsItListens() throws {
        try Privileged.requireRoot()
        let lab = try NetworkLab(name: Privileged.labName("listen"))
        defer { lab.tearDown() }
        let directory = Privileged.scratchDirectory("listen")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let steering = try inside(lab, lab.server) { try SocketSteering() }
        defer { steering.detach() }
        let open = SteeringSlot.base(transport: .tcp, virtualPort: 20004), marked = SteeringSlot.base(transport: .tcp, virtualPort: 20006)
        try steering.setPorts([SocketSteering.PortKey(transport: .tcp, port: 9000)])
        try steering.setInstances([SocketSteering.PortKey(transport: .tcp, port: 20004): (open, false),
                                   SocketSteering.PortKey(transport: .tcp, port: 20006): (marked, true)])
        try steering.replaceRules([], with: [
            SteeringRule(transport: .tcp, initialPort: 9000, network: IPAddress(198, 18, 0, 2), length: 128, clientPort: nil, slot: open)])
        XCTAssertNil(steering.socketCookie(slot: open))
        let server = try lab.spawn(lab.server, ["socat", "TCP4-LISTEN:20004,fork,reuseaddr", "SYSTEM:echo listening $SOCAT_SOCKPORT"],
                                   log: "\(directory)/open.log")
        let unmarked = try lab.spawn(lab.server, ["socat", "TCP4-LISTEN:20006,fork,reuseaddr", "SYSTEM:echo unmarked"],
                                     log: "\(directory)/unmarked.log")
        defer { lab.stop(server); lab.stop(unmarked) }
        _ = try listener(lab, lab.server, port: 20004)
        _ = try listener(lab, lab.server, port: 20006)
        XCTAssertNotNil(steering.socketCookie(slot: open), "the listener is in its slot as soon as it listens")
        XCTAssertNil(steering.socketCookie(slot: marked), "a socket without the engine's mark stays out")
        XCTAssertEqual(try dial(lab, lab.client).standardOutput, "listening 9000\n")
    }
}
