internal import CNetfilterQueue
internal import SystemPackage
#if canImport(Glibc)
internal import Glibc
#endif

/// The kernel's conntrack table over ctnetlink: libmnl sockets, messages parsed in Conntrack+Parsing.
///
/// Two sockets: one for dump requests and their answers, one joined to the event groups, so
/// a dump's answer never interleaves with events. Both belong to the network namespace of
/// the thread that created the object. Owned by one thread.
public final class Conntrack {
    /// The event socket's receive buffer asked for by default (SO_RCVBUFFORCE, else SO_RCVBUF).
    public static let defaultEventBufferSize = 4 << 20
    /// How long a dump may wait for each answer datagram before it fails with ETIMEDOUT.
    static let answerTimeoutMilliseconds: Int32 = 5000

    public let events: Set<ConntrackEventKind>
    public private(set) var statistics = ConntrackStatistics()

    private let dumpSocket: OpaquePointer
    private let eventSocket: OpaquePointer?
    private var sequence: UInt32 = 0
    /// The sequence of a dump whose answer was not read to its end (a timeout or a failed
    /// recv). The kernel refuses a new dump (EBUSY) until that one has been read away.
    private var unfinishedDump: UInt32?
    /// A dump answer datagram is at most 32 KB (the kernel's netlink dump size).
    private let dumpBuffer: UnsafeMutableRawBufferPointer
    /// Events come one per datagram, each well under 1 KB.
    private let eventBuffer: UnsafeMutableRawBufferPointer
    private let requestBuffer: UnsafeMutableRawBufferPointer
    private let sender: UnsafeMutablePointer<sockaddr_nl>

    /// For poll(): the event socket's descriptor, or -1 when no events were asked for.
    public var eventDescriptor: Int32 {
        eventSocket.map { mnl_socket_get_fd($0) } ?? -1
    }

    /// Opens a ctnetlink socket for dumps and, when `events` is not empty, a second one
    /// joined to those event groups (e.g. `[.destroy]`, `[.new, .update, .destroy]`).
    /// Needs CAP_NET_ADMIN (EPERM otherwise, at the group join or at the first dump).
    ///
    /// With the default `net.netfilter.nf_conntrack_events=2` the kernel gives an entry its
    /// event extension only if some socket listened to conntrack events when the entry was
    /// made: entries older than the first listener never report anything, not even their
    /// destroy. Open the event socket before the traffic starts (or set
    /// `nf_conntrack_events=1`), and find the older entries' ends by dumping again.
    public init(events: Set<ConntrackEventKind> = [], eventBufferSize: Int = Conntrack.defaultEventBufferSize)
        throws(NetfilterError)
    {
        self.events = events
        let dumpSocket = try Self.openSocket()
        var eventSocket: OpaquePointer?
        if !events.isEmpty {
            do {
                eventSocket = try Self.openEventSocket(events, bufferSize: eventBufferSize)
            } catch {
                mnl_socket_close(dumpSocket)
                throw error
            }
        }
        self.dumpSocket = dumpSocket
        self.eventSocket = eventSocket
        dumpBuffer = .allocate(byteCount: 64 << 10, alignment: 8)
        eventBuffer = .allocate(byteCount: 16 << 10, alignment: 8)
        requestBuffer = .allocate(byteCount: 256, alignment: 8)
        sender = .allocate(capacity: 1)
        sender.initialize(to: sockaddr_nl())
    }

    deinit {
        mnl_socket_close(dumpSocket)
        if let eventSocket { mnl_socket_close(eventSocket) }
        dumpBuffer.deallocate()
        eventBuffer.deallocate()
        requestBuffer.deallocate()
        sender.deallocate()
    }

    // MARK: - Dumps

    /// Every entry, IPv4 and IPv6, whose `mark & mask == mark & mask`. The kernel filters
    /// (CTA_MARK + CTA_MARK_MASK in the request); a kernel that refuses the filter
    /// (EOPNOTSUPP without CONFIG_NF_CONNTRACK_MARK, EINVAL) gets an unfiltered request,
    /// and every entry is checked here as well, so the answer is the same either way.
    public func dump(mark: UInt32, mask: UInt32) throws(NetfilterError) -> [ConntrackEntry] {
        var entries: [ConntrackEntry] = []
        try forEachEntry(mark: mark, mask: mask) { entries.append($0) }
        return entries
    }

    /// The same entries, handed to `body` one at a time as the dump is read: memory stays
    /// flat however many entries conntrack holds (a SYN flood's hundreds of thousands).
    public func forEachEntry(mark: UInt32, mask: UInt32, _ body: (ConntrackEntry) -> Void) throws(NetfilterError) {
        if let stale = unfinishedDump { try finishDump(stale) }
        statistics.dumps += 1
        guard mask != 0 else {
            try dump(filter: nil, mark: mark, mask: mask, body)
            return
        }
        var delivered = false
        do {
            try dump(filter: (mark & mask, mask), mark: mark, mask: mask) { entry in
                delivered = true
                body(entry)
            }
        } catch where !delivered && (error.errno == .notSupported || error.errno == .invalidArgument) {
            // Refused at once (before any entry): ask again unfiltered.
            statistics.kernelFilterRefusals += 1
            try dump(filter: nil, mark: mark, mask: mask, body)
        }
    }

    private func dump(
        filter: (mark: UInt32, mask: UInt32)?, mark: UInt32, mask: UInt32, _ body: (ConntrackEntry) -> Void
    ) throws(NetfilterError) {
        let header = request(IPCTNL_MSG_CT_GET, flags: NLM_F_REQUEST | NLM_F_DUMP)
        if let filter {
            mnl_attr_put_u32(header, UInt16(CTA_MARK.rawValue), filter.mark.bigEndian)
            mnl_attr_put_u32(header, UInt16(CTA_MARK_MASK.rawValue), filter.mask.bigEndian)
        }
        try send(header, call: .dumpConntrack)
        try readDump(sequence) { message in
            guard let entry = Self.entry(from: message) else {
                statistics.unexpectedMessages += 1
                return
            }
            statistics.entriesReceived += 1
            if entry.matches(mark: mark, mask: mask) {
                body(entry)
            } else {
                statistics.entriesFilteredInUserspace += 1
            }
        }
    }

    /// A new ctnetlink request in `requestBuffer`, for both IPv4 and IPv6, with the next
    /// sequence number.
    private func request(_ message: cntl_msg_types, flags: Int32, family: UInt8 = UInt8(AF_UNSPEC)) -> UnsafeMutablePointer<nlmsghdr> {
        let header = mnl_nlmsg_put_header(requestBuffer.baseAddress)!
        header.pointee.nlmsg_type = Self.messageType(message)
        header.pointee.nlmsg_flags = UInt16(flags)
        sequence &+= 1
        header.pointee.nlmsg_seq = sequence
        let generic = mnl_nlmsg_put_extra_header(header, MemoryLayout<nfgenmsg>.size)!
            .assumingMemoryBound(to: nfgenmsg.self)
        generic.pointee.nfgen_family = family  // AF_UNSPEC: both IPv4 and IPv6
        generic.pointee.version = UInt8(NFNETLINK_V0)
        generic.pointee.res_id = 0
        return header
    }

    /// Deletes every entry, IPv4 and IPv6, whose `mark & mask == mark & mask`, in one
    /// request (a filtered flush: IPCTNL_MSG_CT_DELETE without a tuple, with CTA_MARK and
    /// CTA_MARK_MASK); the connections they carried lose their NAT and conntrack state.
    public func delete(mark: UInt32, mask: UInt32) throws(NetfilterError) {
        if let stale = unfinishedDump { try finishDump(stale) }
        let header = request(IPCTNL_MSG_CT_DELETE, flags: NLM_F_REQUEST | NLM_F_ACK)
        mnl_attr_put_u32(header, UInt16(CTA_MARK.rawValue), (mark & mask).bigEndian)
        mnl_attr_put_u32(header, UInt16(CTA_MARK_MASK.rawValue), mask.bigEndian)
        try send(header, call: .deleteConntrack)
        try readAnswer(sequence, call: .deleteConntrack) { message throws(NetfilterError) in
            guard Int32(message.pointee.nlmsg_type) == NLMSG_ERROR else { return false }
            let code = NetlinkExchange.errorCode(message)
            // ENOENT: nothing matched, which is what we wanted.
            if code == 0 || code == -ENOENT { return true }
            throw NetfilterError(conntrack: .deleteConntrack, errno: Errno(rawValue: -code))
        }
    }

    /// Deletes the one entry whose original direction is `original` (4- or 16-byte
    /// addresses, both of one family) for IP protocol `protocolNumber`, in conntrack zone 0.
    /// Returns false when there was none (ENOENT).
    @discardableResult
    public func delete(protocolNumber: UInt8, original: ConntrackTuple) throws(NetfilterError) -> Bool {
        let isIPv4 = original.source.count == 4
        guard (isIPv4 || original.source.count == 16), original.destination.count == original.source.count else {
            throw NetfilterError(conntrack: .deleteConntrack, errno: .invalidArgument)
        }
        if let stale = unfinishedDump { try finishDump(stale) }
        // A tuple is looked up in the family the request names, not AF_UNSPEC.
        let header = request(IPCTNL_MSG_CT_DELETE, flags: NLM_F_REQUEST | NLM_F_ACK, family: UInt8(isIPv4 ? AF_INET : AF_INET6))
        let tuple = mnl_attr_nest_start(header, UInt16(CTA_TUPLE_ORIG.rawValue))
        let addresses = mnl_attr_nest_start(header, UInt16(CTA_TUPLE_IP.rawValue))
        let (sourceKind, destinationKind) = isIPv4 ? (CTA_IP_V4_SRC.rawValue, CTA_IP_V4_DST.rawValue) : (CTA_IP_V6_SRC.rawValue, CTA_IP_V6_DST.rawValue)
        original.source.withUnsafeBytes { mnl_attr_put(header, UInt16(sourceKind), $0.count, $0.baseAddress) }
        original.destination.withUnsafeBytes { mnl_attr_put(header, UInt16(destinationKind), $0.count, $0.baseAddress) }
        mnl_attr_nest_end(header, addresses)
        let ports = mnl_attr_nest_start(header, UInt16(CTA_TUPLE_PROTO.rawValue))
        mnl_attr_put_u8(header, UInt16(CTA_PROTO_NUM.rawValue), protocolNumber)
        mnl_attr_put_u16(header, UInt16(CTA_PROTO_SRC_PORT.rawValue), original.sourcePort.bigEndian)
        mnl_attr_put_u16(header, UInt16(CTA_PROTO_DST_PORT.rawValue), original.destinationPort.bigEndian)
        mnl_attr_nest_end(header, ports)
        mnl_attr_nest_end(header, tuple)
        try send(header, call: .deleteConntrack)
        var found = true
        try readAnswer(sequence, call: .deleteConntrack) { message throws(NetfilterError) in
            guard Int32(message.pointee.nlmsg_type) == NLMSG_ERROR else { return false }
            let code = NetlinkExchange.errorCode(message)
            if code == -ENOENT { found = false; return true }
            if code == 0 { return true }
            throw NetfilterError(conntrack: .deleteConntrack, errno: Errno(rawValue: -code))
        }
        return found
    }

    private func send(_ header: UnsafeMutablePointer<nlmsghdr>, call: NetfilterError.Call) throws(NetfilterError) {
        try NetlinkExchange.send(header, on: dumpSocket, call)
    }

    /// Receives the kernel's answer to request `expected` on the dump socket, handing each of
    /// its messages to `each` until `each` says the answer is complete.
    private func readAnswer(
        _ expected: UInt32, call: NetfilterError.Call,
        _ each: (UnsafeMutablePointer<nlmsghdr>) throws(NetfilterError) -> Bool
    ) throws(NetfilterError) {
        try NetlinkExchange.readAnswer(on: dumpSocket, sequence: expected, into: dumpBuffer,
                                       timeoutMilliseconds: Self.answerTimeoutMilliseconds, call, each)
    }

    /// Reads the answer to dump `expected` up to NLMSG_DONE, handing each entry message to
    /// `body`. An NLMSG_ERROR (or a DONE carrying an error) throws that errno.
    private func readDump(
        _ expected: UInt32, _ body: (UnsafeMutablePointer<nlmsghdr>) -> Void
    ) throws(NetfilterError) {
        unfinishedDump = expected
        try readAnswer(expected, call: .dumpConntrack) { message throws(NetfilterError) in
            switch Int32(message.pointee.nlmsg_type) {
            case NLMSG_DONE:
                unfinishedDump = nil
                // A dump that failed half-way ends with DONE carrying the negative errno.
                if mnl_nlmsg_get_payload_len(message) >= 4, case let code = NetlinkExchange.errorCode(message), code < 0 {
                    throw NetfilterError(conntrack: .dumpConntrack, errno: Errno(rawValue: -code))
                }
                return true
            case NLMSG_ERROR:
                let code = NetlinkExchange.errorCode(message)
                if code == 0 { return false }
                unfinishedDump = nil
                throw NetfilterError(conntrack: .dumpConntrack, errno: Errno(rawValue: -code))
            case NLMSG_NOOP:
                return false
            default:
                body(message)
                return false
            }
        }
    }

    /// Reads away what is left of an interrupted dump, so the kernel accepts the next one.
    private func finishDump(_ stale: UInt32) throws(NetfilterError) {
        do {
            try readDump(stale) { _ in }
        } catch where error.errno != .timedOut {
            // The old dump ended with an error: it is over all the same.
        }
        unfinishedDump = nil
    }

    // MARK: - Events

    /// Reads every pending event without blocking (at most `limit` datagrams) and calls `body`
    /// for each. ENOBUFS (events were lost) becomes `.overrun` and reading goes on.
    public func drainEvents(limit: Int = .max, _ body: (ConntrackEvent) -> Void) throws(NetfilterError) {
        guard let eventSocket else { return }
        let fd = mnl_socket_get_fd(eventSocket)
        var datagrams = 0
        while datagrams < limit {
            let received = receive(fd, into: eventBuffer, flags: Int32(MSG_DONTWAIT))
            if received < 0 {
                let error = Errno.last
                switch error {
                case .resourceTemporarilyUnavailable: return
                case .interrupted: continue
                case .noBufferSpace:
                    datagrams += 1
                    statistics.eventOverruns += 1
                    body(.overrun)
                    continue
                default: throw NetfilterError(conntrack: .readConntrackEvents, errno: error)
                }
            }
            datagrams += 1
            guard sender.pointee.nl_pid == 0 else {  // multicast from another socket, not the kernel
                statistics.unexpectedMessages += 1
                continue
            }
            var remaining = Int32(received)
            var header = eventBuffer.baseAddress!.assumingMemoryBound(to: nlmsghdr.self)
            while mnl_nlmsg_ok(header, remaining) {
                if let event = Self.event(from: header) {
                    statistics.events += 1
                    body(event)
                } else {
                    statistics.unexpectedMessages += 1
                }
                header = mnl_nlmsg_next(header, &remaining)
            }
        }
    }

    /// Waits up to `timeoutMilliseconds` for events; true if the event socket is readable.
    /// Without an event socket it just sleeps for the timeout and returns false.
    public func waitForEvents(timeoutMilliseconds: Int32) throws(NetfilterError) -> Bool {
        // poll() ignores a negative descriptor: without an event socket this only sleeps.
        var descriptor = pollfd(fd: eventDescriptor, events: Int16(POLLIN), revents: 0)
        let ready = poll(&descriptor, 1, timeoutMilliseconds)
        if ready >= 0 { return ready > 0 }
        let error = Errno.last
        if error == .interrupted { return false }
        throw NetfilterError(conntrack: .pollConntrack, errno: error)
    }

    // MARK: - Sockets

    private static func openSocket() throws(NetfilterError) -> OpaquePointer {
        try NetlinkExchange.openSocket(.openConntrack)
    }

    private static func openEventSocket(
        _ events: Set<ConntrackEventKind>, bufferSize: Int
    ) throws(NetfilterError) -> OpaquePointer {
        let socket = try openSocket()
        let fd = mnl_socket_get_fd(socket)
        let length = socklen_t(MemoryLayout<Int32>.size)
        // SO_RCVBUFFORCE passes rmem_max with CAP_NET_ADMIN; otherwise take what SO_RCVBUF gives.
        var size = Int32(clamping: bufferSize)
        if setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, length) < 0 {
            _ = setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, length)
        }
        // The default, made explicit: an overflow must be reported (ENOBUFS), never hidden.
        var reportOverruns: Int32 = 0
        _ = setsockopt(fd, Int32(SOL_NETLINK), NETLINK_NO_ENOBUFS, &reportOverruns, length)
        for kind in ConntrackEventKind.allCases where events.contains(kind) {
            var group = Int32(kind.group.rawValue)
            guard setsockopt(fd, Int32(SOL_NETLINK), NETLINK_ADD_MEMBERSHIP, &group, length) == 0 else {
                let error = Errno.last
                mnl_socket_close(socket)
                throw NetfilterError(conntrack: .joinConntrackEvents, errno: error)
            }
        }
        return socket
    }

    private func receive(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, flags: Int32) -> Int {
        var length = socklen_t(MemoryLayout<sockaddr_nl>.size)
        return sender.withMemoryRebound(to: sockaddr.self, capacity: 1) { address in
            recvfrom(fd, buffer.baseAddress, buffer.count, flags, address, &length)
        }
    }

    static func messageType(_ message: cntl_msg_types) -> UInt16 {
        UInt16(NFNL_SUBSYS_CTNETLINK << 8) | UInt16(message.rawValue)
    }
}

extension ConntrackEventKind {
    fileprivate var group: nfnetlink_groups {
        switch self {
        case .new: return NFNLGRP_CONNTRACK_NEW
        case .update: return NFNLGRP_CONNTRACK_UPDATE
        case .destroy: return NFNLGRP_CONNTRACK_DESTROY
        }
    }
}
