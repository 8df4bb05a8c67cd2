import Foundation
import Netfilter
import NetworkLab
import Packet
import Synchronization
import TestSupport
import XCTest

/// The Netfilter module against the real kernel: a queue bound inside a namespace the test
/// makes, a real NFQUEUE rule, real TCP traffic from socat.
final class NetfilterQueueTests: XCTestCase {
    /// What the queue thread saw, read by the test after the thread has stopped.
    final class Observations: @unchecked Sendable {
        let lock = NSLock()
        var packets = 0
        var synchronize = 0
        var hooks: Set<UInt8> = []
        var hardwareProtocols: Set<UInt16> = []
        var bytes = 0
        var parseFailures = 0
        var ready = false
        var failure: String?
    }

    func testPacketsAreSeenAndDelivered() throws {
        try seenAndDelivered("seen") { queue, handler in
            guard try queue.wait(timeoutMilliseconds: 100) else { return }
            try queue.drain(handler)
        }
    }

    /// The same through the blocking receive a queue thread uses while it holds no SYN.
    func testPacketsAreSeenAndDeliveredThroughTheBlockingReceive() throws {
        try seenAndDelivered("seenb") { queue, handler in
            try queue.receive(timeoutMilliseconds: 100, handler)
        }
    }

    /// A 1 MiB file sent through a queue served by `serve` (called until the test stops the
    /// thread): every packet seen once, the file arrives unchanged.
    private func seenAndDelivered(
        _ name: String,
        serve: @escaping @Sendable (NetfilterQueue, (QueuedPacket) -> Verdict) throws -> Void
    ) throws {
        try Privileged.requireRoot()
        let lab = try NetworkLab(name: Privileged.labName(name))
        defer { lab.tearDown() }
        let directory = Privileged.scratchDirectory(name)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let port: UInt16 = 5001, queueNumber: UInt16 = 3
        try lab.checked(lab.server, ["iptables", "-w", "-t", "raw", "-A", "PREROUTING", "-p", "tcp",
                                     "--dport", "\(port)", "-j", "NFQUEUE", "--queue-num", "\(queueNumber)"])

        let observations = Observations()
        let stop = Atomic<Bool>(false)
        let finished = DispatchSemaphore(value: 0)
        let thread = Thread {
            defer { finished.signal() }
            do {
                try lab.enterOnCurrentThread(lab.server)
                let queue = try NetfilterQueue(QueueConfiguration(queueNumber: queueNumber))
                observations.lock.withLock { observations.ready = true }
                while !stop.load(ordering: .relaxed) {
                    try serve(queue) { packet in
                        observations.lock.withLock {
                            observations.packets += 1
                            observations.hooks.insert(packet.hook)
                            observations.hardwareProtocols.insert(packet.hardwareProtocol)
                            do {
                                let parsed = try IPPacket(packet.payload)
                                if parsed.tcpFlags.contains(.syn) { observations.synchronize += 1 }
                                observations.bytes += parsed.transportLength
                            } catch {
                                observations.parseFailures += 1
                            }
                        }
                        return .accept
                    }
                }
            } catch {
                observations.lock.withLock { observations.failure = "\(error)" }
            }
        }
        thread.start()
        defer { stop.store(true, ordering: .relaxed); finished.wait() }
        try NetworkLab.poll("the queue to bind", timeout: 10) {
            observations.lock.withLock { observations.ready || observations.failure != nil }
        }
        XCTAssertNil(observations.failure)

        let sent = "\(directory)/sent", received = "\(directory)/received"
        try NetworkLab.makeRandomFile(sent, count: 1 << 20)
        _ = try lab.spawn(lab.server, ["socat", "-u", "TCP-LISTEN:\(port),reuseaddr", "CREATE:\(received)"],
                          log: "\(directory)/server.log")
        try lab.waitForListener(lab.server, port: port)
        try lab.checked(lab.client, ["socat", "-u", "FILE:\(sent)", "TCP:\(lab.server.address):\(port)"], timeout: 60)
        try NetworkLab.poll("the received file", timeout: 10) {
            ((try? FileManager.default.attributesOfItem(atPath: received)[.size] as? Int) ?? 0) >= 1 << 20
        }
        stop.store(true, ordering: .relaxed)
        finished.wait()
        finished.signal()  // the deferred wait must not block

        XCTAssertEqual(try NetworkLab.sha256(sent), try NetworkLab.sha256(received), "data changed through the queue")
        observations.lock.withLock {
            XCTAssertNil(observations.failure)
            XCTAssertEqual(observations.synchronize, 1, "exactly one SYN from the one connection")
            XCTAssertGreaterThan(observations.packets, 1)
            XCTAssertEqual(observations.hooks, [0], "queued from PREROUTING")
            XCTAssertEqual(observations.hardwareProtocols, [0x0800], "IPv4")
            XCTAssertEqual(observations.parseFailures, 0)
            // Every byte of the file crossed the queue (plus TCP headers).
            XCTAssertGreaterThanOrEqual(observations.bytes, 1 << 20)
        }
    }

    /// What a test's namespace thread recorded, read after the thread has ended.
    final class Lines: @unchecked Sendable {
        var all: [String] = []
        func append(_ line: String) { all.append(line) }
    }

    /// Runs `body` on a thread that has entered the lab's server namespace (a queue binds in
    /// the namespace of the thread that opens it) and returns what it recorded; an error it
    /// throws is recorded as "failed: …".
    private func inServerNamespace(_ lab: NetworkLab, _ body: @escaping @Sendable (Lines) throws -> Void) -> [String] {
        let lines = Lines()
        let finished = DispatchSemaphore(value: 0)
        let thread = Thread {
            defer { finished.signal() }
            do {
                try lab.enterOnCurrentThread(lab.server)
                try body(lines)
            } catch {
                lines.append("failed: \(error)")
            }
        }
        thread.start()
        finished.wait()
        return lines.all
    }

    func testBindingAnOwnedQueueSaysWhoOwnsIt() throws {
        try Privileged.requireRoot()
        let lab = try NetworkLab(name: Privileged.labName("busy"))
        defer { lab.tearDown() }
        let messages = inServerNamespace(lab) { lines in
            let first = try NetfilterQueue(QueueConfiguration(queueNumber: 7))
            do {
                _ = try NetfilterQueue(QueueConfiguration(queueNumber: 7))
                lines.append("second bind succeeded")
            } catch {
                lines.append("\(error)")
            }
            withExtendedLifetime(first) {}
        }
        XCTAssertEqual(messages, ["cannot bind queue 7: another process owns it (is vpm already running?)"])
    }

    /// With no packet the blocking receive returns nothing once its time has passed, not at
    /// once (a non-blocking read would) and not never; a new timeout replaces the old one.
    func testTheBlockingReceiveEndsWithItsTimeout() throws {
        try Privileged.requireRoot()
        let lab = try NetworkLab(name: Privileged.labName("rcvto"))
        defer { lab.tearDown() }
        let seen = inServerNamespace(lab) { lines in
            let queue = try NetfilterQueue(QueueConfiguration(queueNumber: 11))
            // A second's slack for a loaded machine: the 40 ms wait must end long before the
            // 2 s one would have.
            for timeout: Int32 in [2000, 40] {
                let started = Date()
                let handled = try queue.receive(timeoutMilliseconds: timeout) { _ in .accept }
                let elapsed = Date().timeIntervalSince(started), wanted = Double(timeout) / 1000
                let when = elapsed < wanted * 0.9 ? "early" : elapsed > wanted + 0.96 ? "late" : "on time"
                lines.append("\(timeout) ms: \(handled) handled, \(when)" + (when == "on time" ? "" : " (\(elapsed) s)"))
            }
        }
        XCTAssertEqual(seen, ["2000 ms: 0 handled, on time", "40 ms: 0 handled, on time"])
    }

    /// A signal from another thread ends the queue's wait with `.wakeup` (and no packets);
    /// the wake-up is cleared by the wait that reported it, so the next wait times out.
    /// Signals given before a wait add up to one wake-up.
    func testWakeupEndsTheWaitFromAnotherThread() throws {
        try Privileged.requireRoot()
        let lab = try NetworkLab(name: Privileged.labName("wake"))
        defer { lab.tearDown() }
        let seen = inServerNamespace(lab) { lines in
            let queue = try NetfilterQueue(QueueConfiguration(queueNumber: 9))
            func wait(_ label: String, _ timeout: Int32) throws {
                lines.append("\(label): \(try queue.waitForPacketsOrWakeup(timeoutMilliseconds: timeout).rawValue)")
            }
            try wait("quiet", 0)
            let signalled = DispatchSemaphore(value: 0)
            let signaller = Thread { [wakeup = queue.wakeup] in
                usleep(50_000)  // most likely while the wait below sleeps; before it works too
                wakeup.signal()
                signalled.signal()
            }
            signaller.start()
            // Far longer than the signal takes: only a missed wake-up runs into it.
            try wait("signalled", 30_000)
            signalled.wait()
            try wait("after", 10)
            queue.wakeup.signal()
            queue.wakeup.signal()
            try wait("twice", 0)
            try wait("after twice", 10)
        }
        let wakeup = NetfilterQueue.Readiness.wakeup.rawValue
        XCTAssertEqual(seen, ["quiet: 0", "signalled: \(wakeup)", "after: 0", "twice: \(wakeup)", "after twice: 0"])
    }
}
