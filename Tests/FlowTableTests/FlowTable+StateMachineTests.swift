import FlowTable
import Packet
import XCTest

final class FlowTableStateMachineTests: XCTestCase {
    private var table = Fixture.table()

    override func setUp() {
        table = Fixture.table()
    }

    /// Feeds `packets` to a new TCP flow and returns the state after each.
    private func run(_ packets: [(Direction, TCPFlags)]) -> [FlowState] {
        let handle = table.add(Fixture.key(Int(table.statistics.inserted) + 1), now: 0)
        return packets.map { table.packet(handle, $0.0, $0.1, now: 0) }
    }

    func testHandshakeAndTeardown() {
        XCTAssertEqual(run([
            (.toServer, .syn),
            (.toClient, [.syn, .ack]),
            (.toServer, .ack),
            (.toServer, [.psh, .ack]),
            (.toClient, .ack),
            (.toServer, [.fin, .ack]),  // client closes
            (.toClient, .ack),          // server acknowledges; half-closed
            (.toClient, [.psh, .ack]),  // server still sends
            (.toClient, [.fin, .ack]),  // server closes: both FINs seen
            (.toServer, .ack),          // the last FIN acknowledged
        ]), [.opening, .opening, .established, .established, .established,
             .closing, .closing, .closing, .closing, .closed])
    }

    func testServerClosesFirst() {
        XCTAssertEqual(run([
            (.toServer, .syn), (.toClient, [.syn, .ack]), (.toServer, .ack),
            (.toClient, [.fin, .ack]),
            (.toServer, [.fin, .ack]),
            (.toServer, .ack),          // the client's own ACK does not acknowledge its FIN
            (.toClient, .ack),
        ]), [.opening, .opening, .established, .closing, .closing, .closing, .closed])
    }

    func testSimultaneousClose() {
        XCTAssertEqual(run([
            (.toServer, .syn), (.toClient, [.syn, .ack]), (.toServer, .ack),
            (.toServer, [.fin, .ack]),
            (.toClient, [.fin, .ack]),  // crossed on the wire: acknowledges data, not the FIN
            (.toClient, .ack),          // the server acknowledges the client's FIN (the first)
            (.toServer, .ack),          // the client acknowledges the server's FIN (the last)
        ]), [.opening, .opening, .established, .closing, .closing, .closing, .closed])
    }

    func testRetransmittedFinCarriesTheFinalACK() {
        XCTAssertEqual(run([
            (.toServer, .syn), (.toClient, [.syn, .ack]), (.toServer, .ack),
            (.toServer, [.fin, .ack]),
            (.toClient, [.fin, .ack]),
            (.toServer, [.fin, .ack]),  // the client resends its FIN, acknowledging the server's
        ]), [.opening, .opening, .established, .closing, .closing, .closed])
    }

    func testResetInEveryState() {
        XCTAssertEqual(run([(.toServer, .syn), (.toClient, [.rst, .ack])]), [.opening, .closed])
        XCTAssertEqual(run([(.toServer, .syn), (.toClient, [.syn, .ack]), (.toServer, .ack), (.toServer, .rst)]),
                       [.opening, .opening, .established, .closed])
        XCTAssertEqual(run([(.toServer, .syn), (.toClient, [.syn, .ack]), (.toServer, .ack),
                            (.toServer, [.fin, .ack]), (.toClient, .rst)]),
                       [.opening, .opening, .established, .closing, .closed])
        XCTAssertEqual(run([(.toServer, .syn), (.toServer, .rst), (.toClient, .rst)]), [.opening, .closed, .closed])
    }

    func testHandshakeNeedsTheServersAnswer() {
        // The client's ACK before any SYN+ACK, and SYN+ACK in the wrong direction, prove nothing.
        XCTAssertEqual(run([(.toServer, .syn), (.toServer, .ack), (.toServer, [.syn, .ack]), (.toServer, .ack)]),
                       [.opening, .opening, .opening, .opening])
        // Retransmitted SYN and SYN+ACK keep the flow opening.
        XCTAssertEqual(run([(.toServer, .syn), (.toServer, .syn), (.toClient, [.syn, .ack]), (.toClient, [.syn, .ack]),
                            (.toServer, .ack)]),
                       [.opening, .opening, .opening, .opening, .established])
    }

    func testDataBothWaysEstablishesAFlowPickedUpMidStream() {
        XCTAssertEqual(run([(.toClient, .ack), (.toClient, [.psh, .ack]), (.toServer, .ack)]),
                       [.opening, .opening, .established])
        XCTAssertEqual(run([(.toServer, [.psh, .ack]), (.toClient, .ack)]), [.opening, .established])
    }

    func testFinDuringHandshake() {
        XCTAssertEqual(run([(.toServer, .syn), (.toServer, .fin), (.toClient, [.fin, .ack]), (.toServer, .ack)]),
                       [.opening, .closing, .closing, .closed])
    }

    func testStraySynsDoNotDisturbALiveFlow() {
        XCTAssertEqual(run([
            (.toServer, .syn), (.toClient, [.syn, .ack]), (.toServer, .ack),
            (.toServer, .syn), (.toClient, [.syn, .ack]),
            (.toServer, [.fin, .ack]), (.toServer, .syn),
        ]), [.opening, .opening, .established, .established, .established, .closing, .closing])
    }

    func testClosedFlowIgnoresAllButSyn() {
        XCTAssertEqual(run([(.toServer, .syn), (.toServer, .rst),
                            (.toServer, .ack), (.toClient, [.fin, .ack]), (.toClient, [.syn, .ack]), (.toClient, .syn)]),
                       [.opening, .closed, .closed, .closed, .closed, .closed])
    }

    func testPortReuseReopensAClosedFlowWithFreshCounters() {
        let handle = table.add(Fixture.key(1), now: 0)
        table.packet(handle, .toServer, .syn, bytes: 60, now: 0)
        table.packet(handle, .toClient, [.syn, .ack], bytes: 60, now: 1)
        table.packet(handle, .toServer, .ack, bytes: 52, now: 2)
        table.packet(handle, .toServer, [.fin, .ack], bytes: 52, now: 3)
        table.packet(handle, .toClient, [.fin, .ack], bytes: 52, now: 4)
        XCTAssertEqual(table.packet(handle, .toServer, .ack, bytes: 52, now: 5), .closed)

        let reopen = table.update(handle, direction: .toServer, tcpFlags: .syn, bytes: 60, now: 20)
        XCTAssertEqual(reopen, FlowUpdate(virtualPort: Fixture.virtualPort, state: .opening, previousState: .closed))
        XCTAssertEqual(table.lookup(Fixture.key(1)), handle)
        let flow = table[handle]
        XCTAssertEqual(flow.counters, FlowCounters(packetsToServer: 1, bytesToServer: 60))
        XCTAssertEqual(flow.firstSeen, 20)
        XCTAssertEqual(flow.lastSeen, 20)
        XCTAssertEqual(table.statistics.reopened, 1)
        // The old handshake is forgotten: the new one has to happen again.
        XCTAssertEqual(table.packet(handle, .toServer, .ack, now: 21), .opening)
        XCTAssertEqual(table.packet(handle, .toClient, [.syn, .ack], now: 21), .opening)
        XCTAssertEqual(table.packet(handle, .toServer, .ack, now: 22), .established)
    }

    func testUDP() {
        let handle = table.add(Fixture.key(1, .udp), now: 0)
        XCTAssertEqual(table.packet(handle, .toServer, bytes: 100, now: 1), .udp)
        XCTAssertEqual(table.packet(handle, .toServer, bytes: 100, now: 2), .udp)
        XCTAssertEqual(table.packet(handle, .toClient, bytes: 300, now: 3), .udpStream)
        XCTAssertEqual(table.packet(handle, .toServer, bytes: 100, now: 4), .udpStream)
        // TCP flags mean nothing to a UDP flow.
        XCTAssertEqual(table.packet(handle, .toServer, [.rst, .fin], bytes: 100, now: 5), .udpStream)
        XCTAssertEqual(table[handle].counters, FlowCounters(packetsToServer: 4, bytesToServer: 400, packetsToClient: 1, bytesToClient: 300))
    }

    func testUDPReplyFirst() {
        let handle = table.add(Fixture.key(1, .udp), now: 0)
        XCTAssertEqual(table.packet(handle, .toClient, .syn, now: 1), .udpStream)
    }
}
