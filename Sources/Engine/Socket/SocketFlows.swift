import Decision
import FlowTable
import Packet
import Policy
import Steering

/// Socket datapath: the flows of steered connections, which conntrack never sees, from the
/// sockets themselves: live connections from a sock_diag dump (state, tcp_info's counters),
/// ended ones from the observer's records of their close (`SocketSteering.takeClosedConnections`).
/// They join the conntrack dump in `ConntrackSync.reconcile`, so `vpm flows`, `--watch`,
/// `vpm stats` and the metrics read one table as on the other datapaths. Counters count
/// TCP payload bytes and segments (conntrack counts whole IP packets).
enum SocketFlows {
    /// One flow and its idle time (ms) for `ConntrackSync.adds`: nil for a live connection
    /// (always listed), the time since its close for an ended one.
    typealias Observed = (flow: ConntrackSync.Flow, idle: UInt64?)

    static func observe(connections: [SocketDiagnostics.Connection], closed: [SocketSteering.ClosedConnection],
                        matcher: SourceMatcher, instances: [Instance], nowNanoseconds: UInt64) -> [Observed] {
        var observed: [Observed] = []
        for connection in connections where connection.state != 6 /* TIME_WAIT: its close was recorded */ {
            guard let flow = flow(client: connection.remote, clientPort: connection.remotePort, server: connection.local,
                                  initialPort: connection.localPort, state: state(connection.state),
                                  counters: FlowCounters(packetsToServer: UInt64(connection.segmentsIn), bytesToServer: connection.bytesReceived,
                                                         packetsToClient: UInt64(connection.segmentsOut), bytesToClient: connection.bytesAcked),
                                  matcher: matcher, instances: instances) else { continue }
            observed.append((flow, nil))
        }
        for record in closed {
            guard let flow = flow(client: record.client, clientPort: record.clientPort, server: record.server,
                                  initialPort: record.initialPort, state: .closed,
                                  counters: FlowCounters(packetsToServer: UInt64(record.segmentsToServer), bytesToServer: record.bytesToServer,
                                                         packetsToClient: UInt64(record.segmentsToClient), bytesToClient: record.bytesToClient),
                                  matcher: matcher, instances: instances) else { continue }
            let idle = nowNanoseconds >= record.closedAt ? (nowNanoseconds - record.closedAt) / 1_000_000 : 0
            observed.append((flow, idle))
        }
        return observed
    }

    /// The flow of a connection from `client` to an initial port: only a client of an AID
    /// (the program refuses the others, so any other is a local program's, not ours).
    static func flow(client: IPAddress, clientPort: UInt16, server: IPAddress, initialPort: UInt16, state: FlowState,
                     counters: FlowCounters, matcher: SourceMatcher, instances: [Instance]) -> ConntrackSync.Flow? {
        guard let aid = matcher.aid(for: client, port: clientPort) else { return nil }
        let virtualPort = instances.first { $0.aid == aid && $0.initialPort == InitialPort(port: initialPort, transport: .tcp) }?.virtualPort ?? 0
        return ConntrackSync.Flow(key: FlowKey(transport: .tcp, client: client, clientPort: clientPort, server: server, initialPort: initialPort),
                                  virtualPort: virtualPort, aid: aid, mode: .source, peer: nil, state: state, counters: counters)
    }

    /// The kernel's TCP states in the flow table's terms.
    static func state(_ state: UInt8) -> FlowState {
        switch state {
        case 1: .established
        case 4, 5, 8, 9, 11: .closing  // FIN_WAIT1/2, CLOSE_WAIT, LAST_ACK, CLOSING
        case 6, 7: .closed  // TIME_WAIT, CLOSE
        default: .opening  // SYN_SENT, SYN_RECV, NEW_SYN_RECV
        }
    }
}
