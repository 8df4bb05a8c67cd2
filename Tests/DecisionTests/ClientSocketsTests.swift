@testable import Decision
import Packet
import XCTest

final class ClientSocketsTests: XCTestCase {
    let address = IPAddress(198, 18, 0, 2)

    func testRegistrationIsUsedUpByItsConnection() {
        let clients = ClientSockets()
        clients.register(transport: .tcp, address: address, port: 40000, aid: "acme", now: 1000)
        XCTAssertEqual(clients.aid(transport: .tcp, address: address, port: 40000, now: 1001), "acme")
        XCTAssertNil(clients.aid(transport: .tcp, address: address, port: 40000, now: 1002), "a reused port registers anew")
        XCTAssertNil(clients.aid(transport: .udp, address: address, port: 40000, now: 1002))
    }

    /// A packet batch keeps the time it started with; a registration made by the control
    /// thread a moment later is newer than that time and must still count (this was a bug:
    /// the wrap-around difference made it look expired).
    func testRegistrationNewerThanTheBatchClockCounts() {
        let clients = ClientSockets()
        clients.register(transport: .tcp, address: address, port: 40001, aid: "globex", now: 2000)
        XCTAssertEqual(clients.aid(transport: .tcp, address: address, port: 40001, now: 1990), "globex")
    }

    func testStaleRegistrationIsIgnored() {
        let clients = ClientSockets()
        clients.register(transport: .tcp, address: address, port: 40002, aid: "acme", now: 1000)
        XCTAssertNil(clients.aid(transport: .tcp, address: address, port: 40002, now: 1000 + ClientSockets.lifetimeMilliseconds))
    }

    func testElapsedNeverWraps() {
        XCTAssertEqual(MonotonicClock.elapsed(since: 10, now: 25), 15)
        XCTAssertEqual(MonotonicClock.elapsed(since: 25, now: 10), 0)
    }
}
