@preconcurrency import Crypto
import Foundation
@testable import Negotiation
import Synchronization
import XCTest

/// Client and server over real TCP on the loopback interface (ports chosen by the kernel).
final class NegotiationChannelTests: XCTestCase {
    private var servers: [NegotiationServer] = []
    private var clients: [NegotiationClient] = []

    override func tearDown() {
        clients.forEach { $0.stop() }
        servers.forEach { $0.stop() }
        clients = []
        servers = []
    }

    /// A started server on 127.0.0.1 that has one instance: AID "acme" on 9000/tcp → 20017.
    private func startServer(host: String = "127.0.0.1", readTimeout: Duration = .seconds(2),
                             key: @escaping @Sendable (String) -> SymmetricKey? = { _ in Fixtures.key },
                             rejected: NegotiationServer.RejectionObserver? = nil) throws -> NegotiationServer {
        let server = NegotiationServer(endpoints: [.init(host: host, port: 0)], key: key, handler: { request, _ in
            request.aid == "acme" && request.initialPort == 9000
                ? .accepted(virtualPort: 20017)
                : .refused(reason: "no instance of AID \(request.aid) listens on \(request.initialPort)/\(request.transport)")
        }, rejected: rejected, nonceCapacity: 65_536, readTimeout: readTimeout, clock: { NegotiationMessage.currentTimestamp() })
        try server.start()
        servers.append(server)
        return server
    }

    private func makeClient() -> NegotiationClient {
        let client = NegotiationClient()
        clients.append(client)
        return client
    }

    /// Runs one negotiation and waits for its completion (at most `wait` seconds).
    private func negotiate(_ client: NegotiationClient, port: Int, host: String = "127.0.0.1",
                           request: NegotiationRequest = Fixtures.request, key: SymmetricKey = Fixtures.key,
                           timeout: Duration = .seconds(2), waitLimit: TimeInterval = 10) -> NegotiationAnswer? {
        let result = Mutex<NegotiationAnswer?>(nil)
        let calls = Mutex(0)
        let done = expectation(description: "completion")
        client.negotiate(request, engine: host, port: port, key: key, timeout: timeout) { answer in
            calls.withLock { $0 += 1 }
            result.withLock { $0 = answer }
            done.fulfill()
        }
        wait(for: [done], timeout: waitLimit)
        Thread.sleep(forTimeInterval: 0.05)
        XCTAssertEqual(calls.withLock { $0 }, 1, "completion called exactly once")
        return result.withLock { $0 }
    }

    private func isFailed(_ answer: NegotiationAnswer?) -> Bool {
        if case .failed = answer { return true }
        return false
    }

    private func freshRequestLine(timestamp: Int64 = NegotiationMessage.currentTimestamp(), key: SymmetricKey = Fixtures.key) -> [UInt8] {
        NegotiationMessage.encode(NegotiationMessage.Envelope(nonce: NegotiationMessage.makeNonce(), timestamp: timestamp,
                                                              body: .negotiate(Fixtures.request)), key: key)
    }

    // MARK: - Round trips

    func testAckRoundTrip() throws {
        let server = try startServer()
        let client = makeClient()
        let port = try XCTUnwrap(server.boundPort)
        XCTAssertNotEqual(port, 0)
        XCTAssertEqual(negotiate(client, port: port), .accepted(virtualPort: 20017))
        XCTAssertEqual(server.statistics, NegotiationStatistics(accepted: 1))
        XCTAssertEqual(client.statistics.sent, 1)
        XCTAssertEqual(client.statistics.answered, 1)
        XCTAssertEqual(client.statistics.accepted, 1)
    }

    func testNakRoundTrip() throws {
        let server = try startServer()
        let client = makeClient()
        var request = Fixtures.request
        request.aid = "globex"
        let answer = negotiate(client, port: try XCTUnwrap(server.boundPort), request: request)
        XCTAssertEqual(answer, .refused(reason: "no instance of AID globex listens on 9000/tcp"))
        XCTAssertEqual(server.statistics, NegotiationStatistics(refused: 1))
        XCTAssertEqual(client.statistics.refused, 1)
        XCTAssertEqual(client.statistics.answered, 1)
    }

    func testRoundTripOverIPv6Loopback() throws {
        let server = NegotiationServer(host: "::1", port: 0, key: { peer in peer == "::1" ? Fixtures.key : nil },
                                       handler: { _, peer in peer == "::1" ? .accepted(virtualPort: 20018) : .refused(reason: peer) })
        do {
            try server.start()
        } catch {
            throw XCTSkip("no IPv6 loopback here: \(error)")
        }
        servers.append(server)
        XCTAssertEqual(negotiate(makeClient(), port: try XCTUnwrap(server.boundPort), host: "::1"), .accepted(virtualPort: 20018))
    }

    /// No address: one socket for every address of both families; IPv4 peers are seen as
    /// plain IPv4, not as IPv4-mapped IPv6.
    func testEveryAddressServesBothFamilies() throws {
        let asked = Mutex<[String]>([])
        let server = NegotiationServer(port: 0, key: { peer in
            asked.withLock { $0.append(peer) }
            return Fixtures.key
        }, handler: { _, _ in .accepted(virtualPort: 20019) })
        try server.start()
        servers.append(server)
        let port = try XCTUnwrap(server.boundPort)
        XCTAssertEqual(negotiate(makeClient(), port: port, host: "127.0.0.1"), .accepted(virtualPort: 20019))
        XCTAssertEqual(negotiate(makeClient(), port: port, host: "::1"), .accepted(virtualPort: 20019))
        XCTAssertEqual(asked.withLock { $0 }, ["127.0.0.1", "::1"])
    }

    /// Several endpoints are one server: a request accepted on one is a replay on another.
    func testEndpointsShareOneReplayCache() throws {
        let server = NegotiationServer(endpoints: [.init(host: "127.0.0.1", port: 0), .init(host: "127.0.0.1", port: 0)],
                                       key: { _ in Fixtures.key }, handler: { _, _ in .accepted(virtualPort: 20017) })
        try server.start()
        servers.append(server)
        let ports = server.boundPorts
        XCTAssertEqual(ports.count, 2)
        let line = freshRequestLine()
        XCTAssertFalse(TestSockets.exchange(port: ports[0], send: line).isEmpty, "the first copy is answered")
        XCTAssertTrue(TestSockets.exchange(port: ports[1], send: line).isEmpty, "the copy on the other endpoint is not")
        XCTAssertEqual(server.statistics.accepted, 1)
        XCTAssertEqual(server.statistics.replayed, 1)
    }

    /// An endpoint that cannot be bound stops the start, names itself, and leaves no other
    /// endpoint bound.
    func testAnUnbindableEndpointNamesItselfAndBindsNothing() throws {
        let free = TestSockets.closedPort()
        let server = NegotiationServer(endpoints: [.init(host: "127.0.0.1", port: free), .init(host: "198.18.255.254", port: free)],
                                       key: { _ in Fixtures.key }, handler: { _, _ in .accepted(virtualPort: 20017) })
        XCTAssertThrowsError(try server.start()) { error in
            XCTAssertTrue("\(error)".contains("198.18.255.254:\(free)") && "\(error)".contains("not on this host"), "\(error)")
        }
        XCTAssertEqual(server.boundPorts, [])
        // The first endpoint's port is free again.
        let again = NegotiationServer(host: "127.0.0.1", port: free, key: { _ in Fixtures.key }, handler: { _, _ in .accepted(virtualPort: 1) })
        try again.start()
        servers.append(again)
    }

    func testServerSeesThePeerAddressAndChoosesTheKeyByIt() throws {
        let asked = Mutex<[String]>([])
        let server = try startServer(key: { peer in
            asked.withLock { $0.append(peer) }
            return Fixtures.key
        })
        XCTAssertEqual(negotiate(makeClient(), port: try XCTUnwrap(server.boundPort)), .accepted(virtualPort: 20017))
        XCTAssertEqual(asked.withLock { $0 }, ["127.0.0.1"])
    }

    // MARK: - Client failures

    func testTimeoutAgainstAListenerThatNeverAccepts() {
        let silent = SilentListener()
        let client = makeClient()
        let timeout = Duration.milliseconds(500)
        let answer = negotiate(client, port: silent.port, timeout: timeout)
        // The client's own deadline ended it: the reason names that timeout.
        guard case .failed(let reason) = answer else { return XCTFail("\(String(describing: answer))") }
        XCTAssertTrue(reason.contains("no answer") && reason.contains("within \(timeout)"), reason)
        XCTAssertEqual(client.statistics.timedOut, 1)
    }

    func testTimeoutAgainstAServerThatAcceptsAndNeverAnswers() {
        let hanging = HangingEngine()
        defer { hanging.stop() }
        let client = makeClient()
        let timeout = Duration.milliseconds(500)
        let answer = negotiate(client, port: hanging.port, timeout: timeout)
        // The client's own deadline ended it: the reason names that timeout.
        guard case .failed(let reason) = answer else { return XCTFail("\(String(describing: answer))") }
        XCTAssertTrue(reason.contains("no answer") && reason.contains("within \(timeout)"), reason)
        XCTAssertEqual(client.statistics.timedOut, 1)
        XCTAssertEqual(client.statistics.answered, 0)
    }

    func testUnreachablePeerFailsQuickly() {
        let client = makeClient()
        // The deadline is far beyond the helper's wait: only the refusal can end it in time.
        let answer = negotiate(client, port: TestSockets.closedPort(), timeout: .seconds(3600))
        guard case .failed(let reason) = answer else { return XCTFail("\(String(describing: answer))") }
        XCTAssertTrue(reason.contains("unreachable: connection refused"), reason)
        XCTAssertEqual(client.statistics.unreachable, 1)
        XCTAssertEqual(client.statistics.timedOut, 0)
    }

    func testAPeerAddressThatIsNotAnIPFailsAtOnce() {
        let answer = negotiate(makeClient(), port: 9901, host: "not an address")
        XCTAssertTrue(isFailed(answer))
    }

    func testBadAnswersAreRejectedByTheClient() throws {
        // Each fake answer is built from the request the fake engine received.
        typealias Forger = @Sendable (NegotiationMessage.Envelope) -> [UInt8]
        func answer(version: Int = 1, nonce: String = NegotiationMessage.makeNonce(), timestamp: Int64? = nil,
                    body: NegotiationMessage.Body? = nil, key: SymmetricKey = Fixtures.key) -> Forger {
            { request in
                NegotiationMessage.encode(NegotiationMessage.Envelope(
                    version: version, nonce: nonce, timestamp: timestamp ?? NegotiationMessage.currentTimestamp(),
                    body: body ?? .ack(inReplyTo: request.nonce, virtualPort: 20017)), key: key)
            }
        }
        let cases: [(String, Forger)] = [
            ("valid (control)", answer()),
            ("wrong key", answer(key: Fixtures.otherKey)),
            ("another request's nonce", answer(body: .ack(inReplyTo: Fixtures.requestNonce, virtualPort: 20017))),
            ("stale", answer(timestamp: NegotiationMessage.currentTimestamp() - 31_000)),
            ("from the future", answer(timestamp: NegotiationMessage.currentTimestamp() + 31_000)),
            ("version 2", answer(version: 2)),
            ("a request, not an answer", answer(body: .negotiate(Fixtures.request))),
            ("garbage", { _ in Array("hello\n".utf8) }),
            ("no newline", { _ in Array("VPM1 abc".utf8) }),
            ("nothing", { _ in [] }),
            ("overlong", { _ in [UInt8](repeating: 0x41, count: 5000) }),
        ]
        let client = makeClient()
        for (name, forge) in cases {
            let engine = FakeEngine { line in
                guard let request = try? NegotiationMessage.decode(line, key: Fixtures.key) else { return [] }
                return forge(request)
            }
            defer { engine.stop() }
            let result = negotiate(client, port: engine.port)
            if name == "valid (control)" {
                XCTAssertEqual(result, .accepted(virtualPort: 20017), name)
            } else {
                XCTAssertTrue(isFailed(result), "\(name): \(String(describing: result))")
            }
        }
        XCTAssertEqual(client.statistics.badAnswer, UInt64(cases.count - 1))
        XCTAssertEqual(client.statistics.accepted, 1)
        XCTAssertEqual(client.statistics.timedOut, 0)
    }

    func testStopEndsNegotiationsInFlightAndLaterOnes() {
        let silent = SilentListener()
        let client = NegotiationClient()
        let result = Mutex<NegotiationAnswer?>(nil)
        let done = expectation(description: "completion")
        client.negotiate(Fixtures.request, engine: "127.0.0.1", port: silent.port, key: Fixtures.key, timeout: .seconds(30)) { answer in
            result.withLock { $0 = answer }
            done.fulfill()
        }
        client.stop()
        wait(for: [done], timeout: 5)
        XCTAssertTrue(isFailed(result.withLock { $0 }))
        let after = expectation(description: "after stop")
        client.negotiate(Fixtures.request, engine: "127.0.0.1", port: silent.port, key: Fixtures.key, timeout: .seconds(30)) { answer in
            if case .failed = answer { after.fulfill() }
        }
        wait(for: [after], timeout: 5)
    }

    func testStoppingOrDroppingTheClientFromInsideACompletionIsSafe() throws {
        let server = try startServer()
        let port = try XCTUnwrap(server.boundPort)
        let stopped = expectation(description: "stopped inside a completion")
        let client = NegotiationClient()
        client.negotiate(Fixtures.request, engine: "127.0.0.1", port: port, key: Fixtures.key, timeout: .seconds(2)) { _ in
            client.stop()
            stopped.fulfill()
        }
        wait(for: [stopped], timeout: 5)

        // The completion holds the last reference: the client goes away on the event loop.
        let dropped = expectation(description: "dropped inside a completion")
        var last: NegotiationClient? = NegotiationClient()
        let holder = Mutex<NegotiationClient?>(last)
        last?.negotiate(Fixtures.request, engine: "127.0.0.1", port: port, key: Fixtures.key, timeout: .seconds(2)) { answer in
            holder.withLock { $0 = nil }
            XCTAssertEqual(answer, .accepted(virtualPort: 20017))
            dropped.fulfill()
        }
        last = nil
        wait(for: [dropped], timeout: 5)
    }

    // MARK: - Concurrency

    func testFiftyConcurrentNegotiationsCompleteWhileOnePeerHangs() throws {
        let server = try startServer()
        let port = try XCTUnwrap(server.boundPort)
        let hanging = HangingEngine()
        defer { hanging.stop() }
        let client = makeClient()
        let order = Mutex<[String]>([])
        let answers = Mutex<[NegotiationAnswer]>([])
        let allDone = expectation(description: "all completions")
        allDone.expectedFulfillmentCount = 53

        for _ in 0..<3 {
            client.negotiate(Fixtures.request, engine: "127.0.0.1", port: hanging.port, key: Fixtures.key, timeout: .seconds(3)) { answer in
                order.withLock { $0.append("hung") }
                if case .failed = answer {} else { XCTFail("the hanging peer answered: \(answer)") }
                allDone.fulfill()
            }
        }
        for index in 0..<50 {
            var request = Fixtures.request
            request.clientPort = UInt16(40000 + index)
            client.negotiate(request, engine: "127.0.0.1", port: port, key: Fixtures.key, timeout: .seconds(3)) { answer in
                order.withLock { $0.append("served") }
                answers.withLock { $0.append(answer) }
                allDone.fulfill()
            }
        }
        wait(for: [allDone], timeout: 15)
        XCTAssertEqual(answers.withLock { $0 }, Array(repeating: .accepted(virtualPort: 20017), count: 50))
        XCTAssertEqual(order.withLock { Array($0.prefix(50)) }, Array(repeating: "served", count: 50),
                       "every served negotiation finished before the hanging peer's timeouts")
        XCTAssertEqual(server.statistics.accepted, 50)
        XCTAssertEqual(client.statistics.timedOut, 3)
        XCTAssertEqual(client.statistics.accepted, 50)
    }

    // MARK: - Server robustness over TCP

    func testTruncatedLinesAreMalformedAndGetNoAnswer() throws {
        let server = try startServer()
        let port = try XCTUnwrap(server.boundPort)
        let line = freshRequestLine()
        var lengths = Array(stride(from: 1, to: line.count - 1, by: 37))
        lengths.append(line.count - 1)  // everything but the newline
        for length in lengths {
            XCTAssertEqual(TestSockets.exchange(port: port, send: Array(line[0..<length])), [], "cut at \(length)")
        }
        XCTAssertEqual(server.statistics, NegotiationStatistics(malformed: UInt64(lengths.count)))
    }

    func testAnEmptyConnectionIsNotCounted() throws {
        let server = try startServer()
        XCTAssertEqual(TestSockets.exchange(port: try XCTUnwrap(server.boundPort), send: []), [])
        Thread.sleep(forTimeInterval: 0.1)
        XCTAssertEqual(server.statistics, NegotiationStatistics())
    }

    func testOverlongInputIsCutOffAndMalformed() throws {
        let server = try startServer()
        let port = try XCTUnwrap(server.boundPort)
        XCTAssertEqual(TestSockets.exchange(port: port, send: [UInt8](repeating: 0x41, count: 5000), shutdownWrite: false), [])
        var long = freshRequestLine()
        long.insert(contentsOf: [UInt8](repeating: 0x41, count: 4096), at: 10)
        XCTAssertEqual(TestSockets.exchange(port: port, send: long), [])
        XCTAssertEqual(server.statistics, NegotiationStatistics(malformed: 2))
    }

    func testASilentPeerIsCutOffAfterTheReadTimeout() throws {
        let readTimeout = Duration.milliseconds(300)
        let rejections = Mutex<[String]>([])
        let server = try startServer(readTimeout: readTimeout, rejected: { reason, _, detail in
            rejections.withLock { $0.append("\(reason): \(detail)") }
        })
        // The client waits far longer than the read timeout: the server's deadline closes the
        // connection (and reports why before it closes), not the client's receive timeout.
        XCTAssertEqual(TestSockets.exchange(port: try XCTUnwrap(server.boundPort), send: Array("VPM1 ".utf8),
                                            shutdownWrite: false, timeout: 300), [])
        XCTAssertEqual(rejections.withLock { $0 }, ["malformed: no complete line within \(readTimeout)"])
        XCTAssertEqual(server.statistics, NegotiationStatistics(malformed: 1))
    }

    func testForgedStaleAndReplayedLinesGetNoAnswerAndTheServerKeepsServing() throws {
        let server = try startServer()
        let port = try XCTUnwrap(server.boundPort)
        XCTAssertEqual(TestSockets.exchange(port: port, send: Array("VPM1 not-a-message\n".utf8)), [])
        XCTAssertEqual(TestSockets.exchange(port: port, send: freshRequestLine(key: Fixtures.otherKey)), [])
        var flipped = freshRequestLine()
        flipped[20] = flipped[20] == UInt8(ascii: "A") ? UInt8(ascii: "B") : UInt8(ascii: "A")
        XCTAssertEqual(TestSockets.exchange(port: port, send: flipped), [])
        XCTAssertEqual(TestSockets.exchange(port: port, send: freshRequestLine(timestamp: NegotiationMessage.currentTimestamp() - 31_000)), [])
        let line = freshRequestLine()
        let first = TestSockets.exchange(port: port, send: line)
        XCTAssertEqual(try NegotiationMessage.decode(first, key: Fixtures.key).body,
                       .ack(inReplyTo: try NegotiationMessage.decode(line, key: Fixtures.key).nonce, virtualPort: 20017))
        XCTAssertEqual(TestSockets.exchange(port: port, send: line), [], "the same line again")
        XCTAssertEqual(server.statistics, NegotiationStatistics(accepted: 1, malformed: 1, forged: 2, stale: 1, replayed: 1))
        XCTAssertEqual(negotiate(makeClient(), port: port), .accepted(virtualPort: 20017), "still serving")
    }

    func testAnUnknownPeerIsForgedAndUnknown() throws {
        let server = try startServer(key: { _ in nil })
        let client = makeClient()
        let answer = negotiate(client, port: try XCTUnwrap(server.boundPort))
        XCTAssertTrue(isFailed(answer))
        XCTAssertEqual(server.statistics, NegotiationStatistics(forged: 1, unknownPeer: 1))
        XCTAssertEqual(client.statistics.badAnswer, 1)
    }

    func testBindingABusyPortSaysWhereAndWhat() throws {
        let first = try startServer()
        let port = try XCTUnwrap(first.boundPort)
        let second = NegotiationServer(host: "127.0.0.1", port: port, key: { _ in Fixtures.key }, handler: { _, _ in .refused(reason: "") })
        XCTAssertThrowsError(try second.start()) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("127.0.0.1:\(port)"), text)
            XCTAssertTrue(text.contains("in use"), text)
        }
        XCTAssertNil(second.boundPort)
    }

    func testStopThenStartAgain() throws {
        let server = try startServer()
        server.stop()
        XCTAssertNil(server.boundPort)
        server.stop()  // twice is fine
        try server.start()
        XCTAssertEqual(negotiate(makeClient(), port: try XCTUnwrap(server.boundPort)), .accepted(virtualPort: 20017))
    }
}
