import Decision
@testable import Engine
import Foundation
import Policy
import XCTest

/// Allocation and release without a kernel: the socket table is given, time is a counter.
final class InstanceRegistryTests: XCTestCase {
    func registry(_ allocation: String = "", range: String = "20000-20002") throws -> InstanceRegistry {
        let configuration = try Configuration.parse("""
            virtual-ports: \(range)
            ports: [9000, 7000]
            applications: {acme: {}, globex: {}, initech: {}, fixed: {instances: {9000: 20000}}}
            \(allocation)
            """)
        return InstanceRegistry(configuration: configuration, statePath: nil)
    }

    var clock: UInt64 = 10_000
    func now() -> UInt64 { clock }

    func testSameAIDAndPortShareAVirtualPortOthersGetTheirOwn() throws {
        let registry = try registry()
        let first = registry.bind(aid: "acme", initialPort: 9000, transport: .tcp, pid: 1, now: now)
        let second = registry.bind(aid: "acme", initialPort: 9000, transport: .tcp, pid: 2, now: now)
        let other = registry.bind(aid: "globex", initialPort: 9000, transport: .tcp, pid: 3, now: now)
        XCTAssertEqual(first, .allocated(20001), "20000 belongs to the configured instance")
        XCTAssertEqual(second, first)
        XCTAssertEqual(other, .allocated(20002))
        XCTAssertEqual(registry.snapshot().first { $0.aid == "acme" }?.processes.map(\.pid), [1, 2])
        XCTAssertEqual(registry.instances().count, 3)
    }

    func testExhaustedRangeFailsAtOnce() throws {
        let registry = try registry()
        _ = registry.bind(aid: "acme", initialPort: 9000, transport: .tcp, pid: 1, now: now)
        _ = registry.bind(aid: "globex", initialPort: 9000, transport: .tcp, pid: 2, now: now)
        XCTAssertEqual(registry.bind(aid: "initech", initialPort: 9000, transport: .tcp, pid: 3, now: now), .exhausted)
    }

    func testUnknownAIDAndPortAreRefusedWithReasons() throws {
        let registry = try registry()
        guard case .refused(let aidReason) = registry.bind(aid: "nobody", initialPort: 9000, transport: .tcp, pid: 1, now: now) else {
            return XCTFail("unknown AID accepted")
        }
        XCTAssertTrue(aidReason.contains("not in the configuration"), aidReason)
        guard case .refused(let portReason) = registry.bind(aid: "acme", initialPort: 8080, transport: .tcp, pid: 1, now: now) else {
            return XCTFail("unlisted port accepted")
        }
        XCTAssertTrue(portReason.contains("not a multiplexed port"), portReason)
    }

    func testPortIsReleasedOnlyWhenItsSocketIsGoneAfterTheGracePeriod() throws {
        let registry = try registry()
        _ = registry.bind(aid: "acme", initialPort: 9000, transport: .tcp, pid: 1, now: now)
        registry.attach(inode: 5, aid: "acme", virtualPort: 20001, transport: .tcp)
        let generation = registry.generation
        // Within the grace period a missing socket (between bind and listen) is expected.
        clock += 1000
        XCTAssertEqual(registry.releaseUnused(sockets: SocketTable(), now: clock).released, [])
        // Past it, with the socket present: kept.
        clock += 5000
        XCTAssertEqual(registry.releaseUnused(sockets: SocketTable(tcp: [20001: [5]]), now: clock).released, [])
        // Socket gone: released, routes change, the port is free again; the configured one stays.
        XCTAssertEqual(registry.releaseUnused(sockets: SocketTable(), now: clock).released.map(\.virtualPort), [20001])
        XCTAssertGreaterThan(registry.generation, generation)
        XCTAssertEqual(registry.snapshot().map(\.aid), ["fixed"])
        XCTAssertEqual(registry.bind(aid: "globex", initialPort: 9000, transport: .tcp, pid: 2, now: now), .allocated(20001))
    }

    /// Kernel datapath: a released port stays out of reach until a conntrack dump begun
    /// after the release finds no vpm connection translated to it (a UDP client that keeps
    /// sending keeps its entry, and its translation to the old instance's port, alive).
    func udpRegistry() throws -> InstanceRegistry {
        InstanceRegistry(configuration: try Configuration.parse("""
            virtual-ports: 20001-20003
            ports: [9000/udp]
            applications: {acme: {}, globex: {}, initech: {}}
            """), statePath: nil)
    }

    func testReleasedPortsWaitUntilConntrackNoLongerRoutesToThem() throws {
        let registry = try udpRegistry()
        registry.quarantineReleasedPorts()
        _ = registry.bind(aid: "acme", initialPort: 9000, transport: .udp, pid: 1, now: now)
        registry.attach(inode: 5, aid: "acme", virtualPort: 20001, transport: .udp)
        clock += 5000
        let releasedAt = MonotonicClock.milliseconds()
        XCTAssertEqual(registry.releaseUnused(sockets: SocketTable(), now: releasedAt).released.map(\.virtualPort), [20001])
        let port = InstanceRegistry.PortKey(transport: .udp, port: 20001)
        XCTAssertEqual(registry.quarantined, [port])
        XCTAssertEqual(registry.bind(aid: "globex", initialPort: 9000, transport: .udp, pid: 2, now: now), .allocated(20002),
                       "acme's UDP clients may still be translated to 20001")
        registry.releaseQuarantine(dumpStarted: releasedAt - 1, routed: [])
        XCTAssertEqual(registry.quarantined, [port], "a dump begun before the release proves nothing")
        registry.releaseQuarantine(dumpStarted: releasedAt + 1, routed: [port])
        XCTAssertEqual(registry.quarantined, [port], "conntrack still routes to it")
        registry.releaseQuarantine(dumpStarted: releasedAt + 2, routed: [InstanceRegistry.PortKey(transport: .tcp, port: 20001)])
        XCTAssertEqual(registry.quarantined, [], "only a tcp connection on the same number: the udp port is free")
        XCTAssertEqual(registry.bind(aid: "initech", initialPort: 9000, transport: .udp, pid: 3, now: now), .allocated(20001))
    }

    func testNoQuarantineUnlessAskedFor() throws {
        let registry = try udpRegistry()
        _ = registry.bind(aid: "acme", initialPort: 9000, transport: .udp, pid: 1, now: now)
        clock += 5000
        _ = registry.releaseUnused(sockets: SocketTable(), now: clock)
        XCTAssertEqual(registry.quarantined, [], "the userspace datapath removes the flows with the instance")
        XCTAssertEqual(registry.bind(aid: "globex", initialPort: 9000, transport: .udp, pid: 2, now: now), .allocated(20001))
    }

    /// The instance exited and another program bound its port: that socket does not keep
    /// the instance (and its AID's clients) alive.
    func testAnotherProgramsSocketOnThePortDoesNotKeepTheInstance() throws {
        let registry = try registry()
        _ = registry.bind(aid: "acme", initialPort: 9000, transport: .tcp, pid: 1, now: now)
        registry.attach(inode: 5, aid: "acme", virtualPort: 20001, transport: .tcp)
        clock += 5000
        XCTAssertEqual(registry.releaseUnused(sockets: SocketTable(tcp: [20001: [5, 6]]), now: clock).released, [])
        XCTAssertEqual(registry.releaseUnused(sockets: SocketTable(tcp: [20001: [9]]), now: clock).released.map(\.virtualPort), [20001])
    }

    /// A graceful shutdown: the listener closed, accepted connections still run. The port
    /// stays reserved and its connections keep their translation (the routes still map the
    /// virtual port back), but new connections and peers' negotiations find no instance;
    /// released when the last connection ends, or back to serving when the AID binds again.
    func testAnInstanceWhoseListenerClosedDrainsWhileItsConnectionsRun() throws {
        let registry = try registry()
        _ = registry.bind(aid: "acme", initialPort: 9000, transport: .tcp, pid: 1, now: now)
        registry.attach(inode: 5, aid: "acme", virtualPort: 20001, transport: .tcp)
        clock += 5000
        let generation = registry.generation
        let draining = SocketTable(tcp: [20001: [7]], tcpConnections: [20001: 1])
        let release = registry.releaseUnused(sockets: draining, now: clock)
        XCTAssertEqual(release.released, [])
        XCTAssertEqual(release.startedDraining.map(\.virtualPort), [20001])
        XCTAssertGreaterThan(registry.generation, generation, "the routes stop sending new connections")
        let acme = registry.instances().first { $0.aid == "acme" }
        XCTAssertEqual(acme?.virtualPort, 20001)
        XCTAssertEqual(acme?.accepting, false)
        XCTAssertEqual(registry.snapshot().first { $0.aid == "acme" }?.draining, true)
        XCTAssertNil(registry.virtualPort(aid: "acme", initialPort: 9000, transport: .tcp), "no negotiation to a draining instance")
        // Another AID does not get the port while acme's connections run on it.
        XCTAssertEqual(registry.bind(aid: "globex", initialPort: 9000, transport: .tcp, pid: 2, now: now), .allocated(20002))
        // acme binds again: still draining until its new socket is bound; a bind that fails
        // (EADDRINUSE: no SO_REUSEADDR while connections hold the port) does not forget it.
        XCTAssertEqual(registry.bind(aid: "acme", initialPort: 9000, transport: .tcp, pid: 3, now: now), .allocated(20001))
        XCTAssertEqual(registry.instances().first { $0.aid == "acme" }?.accepting, false)
        XCTAssertFalse(registry.discardIfUnused(aid: "acme", virtualPort: 20001, transport: .tcp))
        XCTAssertTrue(registry.isDraining(aid: "acme", virtualPort: 20001, transport: .tcp))
        // Bound: serving, at once.
        let before = registry.generation
        registry.attach(inode: 8, aid: "acme", virtualPort: 20001, transport: .tcp)
        XCTAssertGreaterThan(registry.generation, before)
        XCTAssertEqual(registry.instances().first { $0.aid == "acme" }?.accepting, true)
        // Its listener closes again and the last connection ends: released.
        clock += 5000
        XCTAssertFalse(registry.releaseUnused(sockets: draining, now: clock).released.contains { $0.aid == "acme" })
        XCTAssertEqual(registry.releaseUnused(sockets: SocketTable(), now: clock).released.map(\.virtualPort), [20001])
    }

    /// UDP has no accepted connections: a UDP instance without its socket is gone.
    func testAUDPInstanceDoesNotDrain() throws {
        let registry = try InstanceRegistry(configuration: Configuration.parse("""
            virtual-ports: 20001-20002
            ports: [5353/udp]
            applications: {acme: {}}
            """), statePath: nil)
        XCTAssertEqual(registry.bind(aid: "acme", initialPort: 5353, transport: .udp, pid: 1, now: now), .allocated(20001))
        registry.attach(inode: 5, aid: "acme", virtualPort: 20001, transport: .udp)
        clock += 5000
        XCTAssertEqual(registry.releaseUnused(sockets: SocketTable(tcpConnections: [20001: 1]), now: clock).released.map(\.virtualPort), [20001])
    }

    func testSocketTableCountsConnectionsNotListenersOrTimeWait() {
        let text = """
              sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
               0: 0100007F:4E21 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 100 1
               1: 0100007F:4E21 0100007F:B5E2 01 00000000:00000000 00:00000000 00000000     0        0 101 1
               2: 0100007F:4E21 0100007F:B5E4 08 00000000:00000000 00:00000000 00000000     0        0 102 1
               3: 0100007F:4E21 0100007F:B5E6 06 00000000:00000000 03:00000F9A 00000000     0        0 0 3
               4: 0100007F:B5E2 0100007F:4E21 01 00000000:00000000 00:00000000 00000000     0        0 103 1
            """
        XCTAssertEqual(SocketTable.connections(text), [20001: 2, 46562: 1])
        XCTAssertEqual(SocketTable.parse(text)[20001], [100, 101, 102, 0])
    }

    func testABindNewerThanTheWatchersClockIsNotReleased() throws {
        let registry = try registry()
        _ = registry.bind(aid: "acme", initialPort: 9000, transport: .tcp, pid: 1, now: now)
        // The watcher read its clock just before this bind: the bind looks "in the future".
        XCTAssertEqual(registry.releaseUnused(sockets: SocketTable(), now: clock - 5).released, [])
    }

    func testRegistrationsSurviveARestartWhileTheirSocketExists() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("vpm-registry-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        // A real listening socket on a port the kernel picks stands in for a running instance.
        var listener: Int32 = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { if listener >= 0 { close(listener) } }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                XCTAssertEqual(bind(listener, $0, length), 0)
                XCTAssertEqual(listen(listener, 1), 0)
                XCTAssertEqual(getsockname(listener, $0, &length), 0)
            }
        }
        let port = UInt16(bigEndian: address.sin_port)
        let configuration = try Configuration.parse("virtual-ports: \(port)-\(port)\nports: [9]\napplications: {acme: {}}\n")
        let before = InstanceRegistry(configuration: configuration, statePath: path)
        XCTAssertEqual(before.bind(aid: "acme", initialPort: 9, transport: .tcp, pid: getpid(), now: now), .allocated(port))
        var status = stat()
        XCTAssertEqual(fstat(listener, &status), 0)
        before.attach(inode: UInt64(status.st_ino), aid: "acme", virtualPort: port, transport: .tcp)
        // A restarted engine keeps the registration while its socket exists ...
        XCTAssertEqual(InstanceRegistry(configuration: configuration, statePath: path).snapshot().map(\.virtualPort), [port])
        // ... and drops it once the socket is gone.
        close(listener)
        listener = -1
        XCTAssertEqual(InstanceRegistry(configuration: configuration, statePath: path).snapshot().count, 0)
    }

    func testSocketTableParsesProcNet() {
        let text = """
              sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
               0: 00000000:4E21 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0
               1: 0100007F:0050 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0 20 4 30 10 -1
            """
        XCTAssertEqual(SocketTable.parse(text), [20001: [1], 80: [2]])
    }
}
