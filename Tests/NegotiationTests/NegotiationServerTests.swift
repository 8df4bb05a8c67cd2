import Crypto
import Foundation
@testable import Negotiation
import Synchronization
import XCTest

/// The server's checks and counters, one request line at a time (no sockets): the same
/// code path a connection takes after its line arrives.
final class NegotiationServerTests: XCTestCase {
    /// A clock the test moves by hand.
    final class TestClock: Sendable {
        let now = Mutex(Fixtures.timestamp)
        func advance(milliseconds: Int64) { now.withLock { $0 += milliseconds } }
        var read: @Sendable () -> Int64 { { self.now.withLock { $0 } } }
    }

    private func makeServer(clock: TestClock = TestClock(), nonceCapacity: Int = 65_536,
                            answer: NegotiationAnswer = .accepted(virtualPort: 20017)) -> NegotiationServer {
        NegotiationServer(endpoints: [.init(host: "127.0.0.1", port: 0)], key: { _ in Fixtures.key }, handler: { _, _ in answer },
                          rejected: nil, nonceCapacity: nonceCapacity, readTimeout: .seconds(2), clock: clock.read)
    }

    private func request(nonce: String = NegotiationMessage.makeNonce(), timestamp: Int64 = Fixtures.timestamp,
                         version: Int = 1, key: SymmetricKey = Fixtures.key) -> [UInt8] {
        NegotiationMessage.encode(NegotiationMessage.Envelope(version: version, nonce: nonce, timestamp: timestamp,
                                                              body: .negotiate(Fixtures.request)), key: key)
    }

    func testValidRequestIsAcknowledgedInReplyToItsNonce() throws {
        let seen = Mutex<[String]>([])
        let server = NegotiationServer(endpoints: [.init(host: "127.0.0.1", port: 0)], key: { _ in Fixtures.key },
                                       handler: { request, peer in
                                           seen.withLock { $0.append("\(request.aid) from \(peer)") }
                                           return .accepted(virtualPort: 20017)
                                       },
                                       rejected: nil, nonceCapacity: 16, readTimeout: .seconds(2), clock: TestClock().read)
        let answer = try XCTUnwrap(server.respond(to: Array(Fixtures.requestLine.utf8), from: "198.18.0.2", key: Fixtures.key))
        let envelope = try NegotiationMessage.decode(answer, key: Fixtures.key)
        XCTAssertEqual(envelope.body, .ack(inReplyTo: Fixtures.requestNonce, virtualPort: 20017))
        XCTAssertEqual(envelope.version, 1)
        XCTAssertEqual(envelope.timestamp, Fixtures.timestamp)
        XCTAssertNotEqual(envelope.nonce, Fixtures.requestNonce)
        XCTAssertEqual(seen.withLock { $0 }, ["acme from 198.18.0.2"])
        XCTAssertEqual(server.statistics, NegotiationStatistics(accepted: 1))
    }

    /// During a fleet key rotation a peer may sign with the new key or the previous one: a
    /// request verified by either is answered with the key that verified it; one signed with
    /// neither is forged.
    func testARequestSignedWithAnyOfThePeersKeysIsAnsweredWithThatKey() throws {
        let server = makeServer()
        let keys = [Fixtures.otherKey, Fixtures.key]
        let answer = try XCTUnwrap(server.respond(to: request(key: Fixtures.key), from: "198.18.0.2", keys: keys))
        XCTAssertEqual(try NegotiationMessage.decode(answer, key: Fixtures.key).body.type, "ack")
        XCTAssertThrowsError(try NegotiationMessage.decode(answer, key: Fixtures.otherKey), "answered with the key that verified")
        let other = try XCTUnwrap(server.respond(to: request(key: Fixtures.otherKey), from: "198.18.0.2", keys: keys))
        XCTAssertEqual(try NegotiationMessage.decode(other, key: Fixtures.otherKey).body.type, "ack")
        XCTAssertNil(server.respond(to: request(key: SymmetricKey(size: .bits256)), from: "198.18.0.2", keys: keys))
        XCTAssertNil(server.respond(to: request(), from: "198.18.0.2", keys: []), "no key: nothing verifies")
        XCTAssertEqual(server.statistics, NegotiationStatistics(accepted: 2, forged: 2))
    }

    func testRefusalIsANakWithTheReason() throws {
        let server = makeServer(answer: .refused(reason: "no instance of acme on 9000/tcp"))
        let answer = try XCTUnwrap(server.respond(to: request(), from: "198.18.0.2", key: Fixtures.key))
        guard case .nak(_, let reason) = try NegotiationMessage.decode(answer, key: Fixtures.key).body else { return XCTFail() }
        XCTAssertEqual(reason, "no instance of acme on 9000/tcp")
        XCTAssertEqual(server.statistics, NegotiationStatistics(refused: 1))
    }

    func testHandlerFailureAndPortZeroAreNaksAndLongReasonsAreShortened() throws {
        let long = makeServer(answer: .failed(reason: String(repeating: "é\n", count: 5000)))
        let answer = try XCTUnwrap(long.respond(to: request(), from: "198.18.0.2", key: Fixtures.key))
        XCTAssertLessThanOrEqual(answer.count, NegotiationMessage.maximumLineLength)
        guard case .nak(_, let reason) = try NegotiationMessage.decode(answer, key: Fixtures.key).body else { return XCTFail() }
        XCTAssertEqual(reason.unicodeScalars.count, 512)
        XCTAssertFalse(reason.contains("\n"))
        let zero = makeServer(answer: .accepted(virtualPort: 0))
        let refused = try XCTUnwrap(zero.respond(to: request(), from: "198.18.0.2", key: Fixtures.key))
        guard case .nak = try NegotiationMessage.decode(refused, key: Fixtures.key).body else { return XCTFail() }
    }

    func testEachRejectionIsCountedUnderItsOwnName() {
        let clock = TestClock()
        let server = makeServer(clock: clock)
        clock.advance(milliseconds: 30_000)  // running for 30 s: the whole window is after its start
        let now = clock.read()
        let peer = "198.18.0.2"
        XCTAssertNil(server.respond(to: Array("garbage\n".utf8), from: peer, key: Fixtures.key))
        XCTAssertNil(server.respond(to: request(key: Fixtures.otherKey), from: peer, key: Fixtures.key))
        XCTAssertNil(server.respond(to: request(timestamp: now - 30_001), from: peer, key: Fixtures.key))
        XCTAssertNil(server.respond(to: request(timestamp: now + 30_001), from: peer, key: Fixtures.key))
        XCTAssertEqual(server.statistics, NegotiationStatistics(malformed: 1, forged: 1, stale: 2))
        // The edges of the window are still fresh.
        XCTAssertNotNil(server.respond(to: request(timestamp: now - 30_000), from: peer, key: Fixtures.key))
        XCTAssertNotNil(server.respond(to: request(timestamp: now + 30_000), from: peer, key: Fixtures.key))
        // Extreme timestamps do not overflow the comparison.
        XCTAssertNil(server.respond(to: request(timestamp: .min), from: peer, key: Fixtures.key))
        XCTAssertNil(server.respond(to: request(timestamp: .max), from: peer, key: Fixtures.key))
        XCTAssertEqual(server.statistics, NegotiationStatistics(accepted: 2, malformed: 1, forged: 1, stale: 4))
    }

    func testTheSameLineTwiceIsReplayed() {
        let server = makeServer()
        let line = Array(Fixtures.requestLine.utf8)
        XCTAssertNotNil(server.respond(to: line, from: "198.18.0.2", key: Fixtures.key))
        XCTAssertNil(server.respond(to: line, from: "198.18.0.2", key: Fixtures.key))
        XCTAssertNil(server.respond(to: line, from: "198.18.0.3", key: Fixtures.key), "from another address too")
        XCTAssertEqual(server.statistics, NegotiationStatistics(accepted: 1, replayed: 2))
    }

    /// A restarted engine's server has forgotten the nonces it accepted: a request stamped
    /// before the server existed is refused as replayed, even within the stale window.
    func testARequestOlderThanTheServerIsReplayed() {
        let clock = TestClock()
        let before = request(timestamp: Fixtures.timestamp - 1)
        clock.advance(milliseconds: 2_000)  // the engine restarts two seconds later
        let server = makeServer(clock: clock)
        XCTAssertNil(server.respond(to: before, from: "198.18.0.2", key: Fixtures.key))
        XCTAssertNil(server.respond(to: request(timestamp: clock.read() - 1), from: "198.18.0.2", key: Fixtures.key))
        XCTAssertEqual(server.statistics, NegotiationStatistics(replayed: 2))
        XCTAssertNotNil(server.respond(to: request(timestamp: clock.read()), from: "198.18.0.2", key: Fixtures.key),
                        "made at or after the start: fresh")
    }

    func testANonceIsRememberedUntilItsMessageIsStale() {
        let clock = TestClock()
        let server = makeServer(clock: clock)
        let nonce = NegotiationMessage.makeNonce()
        XCTAssertNotNil(server.respond(to: request(nonce: nonce), from: "198.18.0.2", key: Fixtures.key))
        clock.advance(milliseconds: 30_000)
        XCTAssertNil(server.respond(to: request(nonce: nonce), from: "198.18.0.2", key: Fixtures.key))
        XCTAssertEqual(server.statistics.replayed, 1)
        clock.advance(milliseconds: 1)
        XCTAssertNil(server.respond(to: request(nonce: nonce), from: "198.18.0.2", key: Fixtures.key))
        XCTAssertEqual(server.statistics.stale, 1, "after the window the message is stale, not replayed")
        // After 60 s the nonce is forgotten; a new message (new timestamp) may reuse it.
        clock.advance(milliseconds: 30_000)
        XCTAssertNotNil(server.respond(to: request(nonce: nonce, timestamp: clock.read()), from: "198.18.0.2", key: Fixtures.key))
    }

    func testWrongVersionIsMalformedAfterTheReplayCheck() {
        let server = makeServer()
        let line = request(version: 2)
        XCTAssertNil(server.respond(to: line, from: "198.18.0.2", key: Fixtures.key))
        XCTAssertNil(server.respond(to: line, from: "198.18.0.2", key: Fixtures.key))
        XCTAssertEqual(server.statistics, NegotiationStatistics(malformed: 1, replayed: 1))
    }

    func testAnAnswerSentBackToTheServerIsMalformed() {
        let server = makeServer()
        var ack = Fixtures.ackEnvelope
        ack.timestamp = Fixtures.timestamp
        XCTAssertNil(server.respond(to: NegotiationMessage.encode(ack, key: Fixtures.key), from: "198.18.0.2", key: Fixtures.key))
        XCTAssertEqual(server.statistics, NegotiationStatistics(malformed: 1))
    }

    func testRejectionsAreReportedToTheObserver() {
        let reports = Mutex<[String]>([])
        let server = NegotiationServer(endpoints: [.init(host: "127.0.0.1", port: 0)], key: { _ in Fixtures.key }, handler: { _, _ in .refused(reason: "") },
                                       rejected: { reason, peer, _ in reports.withLock { $0.append("\(reason) \(peer)") } },
                                       nonceCapacity: 16, readTimeout: .seconds(2), clock: TestClock().read)
        _ = server.respond(to: request(key: Fixtures.otherKey), from: "198.18.0.9", key: Fixtures.key)
        XCTAssertEqual(reports.withLock { $0 }, ["forged 198.18.0.9"])
    }

    // MARK: - Nonce cache

    private func nonce(_ value: Int) -> NonceCache.Nonce {
        NonceCache.Nonce(String(format: "%032x", value))!
    }

    func testNonceCacheExpiresInArrivalOrder() {
        var cache = NonceCache(capacity: 4, window: 60_000)
        XCTAssertEqual(cache.admit(nonce(1), timestamp: 0, now: 0), .fresh)
        XCTAssertEqual(cache.admit(nonce(2), timestamp: 10_000, now: 10_000), .fresh)
        XCTAssertEqual(cache.admit(nonce(1), timestamp: 0, now: 59_999), .replayed)
        cache.expire(now: 60_000)
        XCTAssertEqual(cache.storedCount, 1)
        XCTAssertEqual(cache.admit(nonce(1), timestamp: 60_000, now: 60_000), .fresh)
        XCTAssertEqual(cache.admit(nonce(2), timestamp: 60_000, now: 60_000), .replayed)
        XCTAssertEqual(cache.evictions, 0)
    }

    func testAFullNonceCacheFailsClosed() {
        var cache = NonceCache(capacity: 4, window: 60_000)
        for index in 0..<4 {
            XCTAssertEqual(cache.admit(nonce(index), timestamp: 1_000 + Int64(index), now: 1_000), .fresh)
        }
        // Full, nothing expired: the oldest (timestamp 1000) is evicted; from now on no
        // request stamped 1000 or earlier can be proven fresh.
        XCTAssertEqual(cache.admit(nonce(10), timestamp: 1_010, now: 1_010), .fresh)
        XCTAssertEqual(cache.evictions, 1)
        XCTAssertEqual(cache.horizon, 1_000)
        XCTAssertEqual(cache.admit(nonce(0), timestamp: 1_000, now: 1_020), .replayed, "the evicted nonce itself")
        XCTAssertEqual(cache.admit(nonce(11), timestamp: 999, now: 1_020), .replayed, "any request as old")
        XCTAssertEqual(cache.admit(nonce(12), timestamp: 1_020, now: 1_020), .fresh, "newer requests pass")
        XCTAssertEqual(cache.evictions, 2)
        // Once everything has expired the cache takes new nonces without evicting.
        XCTAssertEqual(cache.admit(nonce(13), timestamp: 70_000, now: 70_000), .fresh)
        XCTAssertEqual(cache.storedCount, 1)
        XCTAssertEqual(cache.evictions, 2)
    }

    func testOverflowThroughTheServerIsCounted() {
        let clock = TestClock()
        let server = makeServer(clock: clock, nonceCapacity: 2)
        for _ in 0..<3 {
            XCTAssertNotNil(server.respond(to: request(timestamp: clock.read()), from: "198.18.0.2", key: Fixtures.key))
            clock.advance(milliseconds: 1)
        }
        XCTAssertEqual(server.statistics.nonceCacheEvictions, 1)
        XCTAssertNil(server.respond(to: request(timestamp: Fixtures.timestamp), from: "198.18.0.2", key: Fixtures.key),
                     "as old as the evicted one")
        XCTAssertEqual(server.statistics.replayed, 1)
        XCTAssertNotNil(server.respond(to: request(timestamp: clock.read()), from: "198.18.0.2", key: Fixtures.key))
    }
}
