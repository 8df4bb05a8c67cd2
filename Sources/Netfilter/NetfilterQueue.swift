internal import CNetfilterQueue
internal import CNetfilterShim
public import SystemPackage
#if canImport(Glibc)
internal import Glibc
#endif

/// One bound NFQUEUE queue on a netlink socket (the libmnl path).
///
/// Owned by one thread. Every buffer the packet path needs is allocated once here:
/// receiving, handing a packet to the handler and returning its verdict allocate nothing.
/// A rewritten payload goes back with an iovec that points into the receive buffer.
public final class NetfilterQueue {
    public let configuration: QueueConfiguration
    /// Wakes this queue's thread from `waitForPacketsOrWakeup`; another thread may signal it.
    public let wakeup: QueueWakeup
    public private(set) var statistics = QueueStatistics()

    private let socket: OpaquePointer
    private let portID: UInt32
    private var sequence: UInt32 = 1
    /// The socket's SO_RCVTIMEO, once `receive(timeoutMilliseconds:)` has set it.
    private var receiveTimeout: Int32?
    private let receiveBuffer: UnsafeMutableRawBufferPointer
    private let sendBuffer: UnsafeMutableRawBufferPointer
    private let attributes: UnsafeMutablePointer<UnsafeMutablePointer<nlattr>?>
    private let attributeCount = Int(__NFQA_MAX.rawValue)
    private let vectors: UnsafeMutablePointer<iovec>
    private let message: UnsafeMutablePointer<msghdr>
    private let kernelAddress: UnsafeMutablePointer<sockaddr_nl>
    /// Zeros that pad a returned payload to netlink's 4-byte alignment.
    private let padding: UnsafeMutableRawPointer

    private var queue: UInt16 { configuration.queueNumber }

    /// The netlink socket, for poll/epoll by the caller.
    public var fileDescriptor: FileDescriptor { FileDescriptor(rawValue: mnl_socket_get_fd(socket)) }

    /// Opens a netlink socket, binds the queue and applies the configuration.
    /// Fails with EPERM without CAP_NET_ADMIN and with EBUSY when another process owns the queue.
    public init(_ configuration: QueueConfiguration) throws(NetfilterError) {
        self.configuration = configuration
        let queue = configuration.queueNumber
        guard let socket = mnl_socket_open(NETLINK_NETFILTER) else {
            throw NetfilterError(.openSocket, queue: queue, errno: .last)
        }
        guard mnl_socket_bind(socket, 0, pid_t(MNL_SOCKET_AUTOPID)) >= 0 else {
            let error = Errno.last
            mnl_socket_close(socket)
            throw NetfilterError(.bindSocket, queue: queue, errno: error)
        }
        do { wakeup = try QueueWakeup(queue: queue) } catch {
            mnl_socket_close(socket)
            throw error
        }
        self.socket = socket
        self.portID = mnl_socket_get_portid(socket)
        // One whole copied packet (up to 64 KB with GSO) plus the netlink headers around it.
        let receiveSize = Int(configuration.copyRange) + vpm_mnl_socket_buffer_size()
        receiveBuffer = .allocate(byteCount: receiveSize, alignment: 8)
        sendBuffer = .allocate(byteCount: vpm_mnl_socket_buffer_size(), alignment: 8)
        attributes = .allocate(capacity: Int(__NFQA_MAX.rawValue))
        attributes.initialize(repeating: nil, count: Int(__NFQA_MAX.rawValue))
        padding = .allocate(byteCount: 8, alignment: 8)
        padding.initializeMemory(as: UInt8.self, repeating: 0, count: 8)
        vectors = .allocate(capacity: 3)
        vectors.initialize(repeating: iovec(), count: 3)
        kernelAddress = .allocate(capacity: 1)
        kernelAddress.initialize(to: sockaddr_nl())
        kernelAddress.pointee.nl_family = sa_family_t(AF_NETLINK)
        message = .allocate(capacity: 1)
        message.initialize(to: msghdr())
        message.pointee.msg_name = UnsafeMutableRawPointer(kernelAddress)
        message.pointee.msg_namelen = socklen_t(MemoryLayout<sockaddr_nl>.size)
        message.pointee.msg_iov = vectors

        setReceiveBuffer(configuration.receiveBufferSize)
        try configure(.bindQueue) { header in
            nfq_nlmsg_cfg_put_cmd(header, UInt16(AF_INET), UInt8(NFQNL_CFG_CMD_BIND.rawValue))
        }
        try configure(.configureQueue) { header in
            nfq_nlmsg_cfg_put_params(header, UInt8(NFQNL_COPY_PACKET.rawValue), Int32(configuration.copyRange))
            nfq_nlmsg_cfg_put_qmaxlen(header, configuration.maximumLength)
            var flags: UInt32 = 0
            if configuration.segmentationOffload { flags |= UInt32(NFQA_CFG_F_GSO) }
            if configuration.failOpen { flags |= UInt32(NFQA_CFG_F_FAIL_OPEN) }
            let mask = UInt32(NFQA_CFG_F_GSO) | UInt32(NFQA_CFG_F_FAIL_OPEN)
            mnl_attr_put_u32(header, UInt16(NFQA_CFG_FLAGS.rawValue), flags.bigEndian)
            mnl_attr_put_u32(header, UInt16(NFQA_CFG_MASK.rawValue), mask.bigEndian)
        }
    }

    deinit {
        // Closing the socket unbinds the queue; the kernel drops what it still held for us.
        mnl_socket_close(socket)
        receiveBuffer.deallocate()
        sendBuffer.deallocate()
        attributes.deallocate()
        vectors.deallocate()
        kernelAddress.deallocate()
        message.deallocate()
        padding.deallocate()
    }

    /// What ended a wait: packets to read, a `wakeup` signal, or both (neither: the timeout).
    public struct Readiness: OptionSet, Sendable {
        public let rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        public static let packets = Readiness(rawValue: 1)
        public static let wakeup = Readiness(rawValue: 2)
    }

    /// Waits until a packet is ready or the timeout passes. Returns whether one is ready.
    public func wait(timeoutMilliseconds: Int32) throws(NetfilterError) -> Bool {
        try poll(timeoutMilliseconds: timeoutMilliseconds, wakeable: false).contains(.packets)
    }

    /// Waits until a packet is ready, `wakeup` is signalled or the timeout passes; a
    /// reported wake-up is already cleared. One `poll` either way.
    public func waitForPacketsOrWakeup(timeoutMilliseconds: Int32) throws(NetfilterError) -> Readiness {
        try poll(timeoutMilliseconds: timeoutMilliseconds, wakeable: true)
    }

    private func poll(timeoutMilliseconds: Int32, wakeable: Bool) throws(NetfilterError) -> Readiness {
        var descriptors = (pollfd(fd: mnl_socket_get_fd(socket), events: Int16(POLLIN), revents: 0),
                           pollfd(fd: wakeup.fileDescriptor, events: Int16(POLLIN), revents: 0))
        while true {
            let ready = withUnsafeMutableBytes(of: &descriptors) { raw in
                Glibc.poll(raw.baseAddress!.assumingMemoryBound(to: pollfd.self), wakeable ? 2 : 1, timeoutMilliseconds)
            }
            if ready >= 0 { break }
            let error = Errno.last
            if error == .interrupted { return [] }
            throw NetfilterError(.poll, queue: queue, errno: error)
        }
        var readiness: Readiness = []
        if descriptors.0.revents != 0 { readiness.insert(.packets) }
        if wakeable, descriptors.1.revents != 0 {
            wakeup.clear()
            readiness.insert(.wakeup)
        }
        return readiness
    }

    /// Receives what the socket holds without blocking, up to `limit` datagrams, and calls
    /// `handler` for each packet; its verdict is sent before the next packet is read.
    /// Returns the number of packets handled (0 when nothing was waiting).
    @discardableResult
    public func drain(limit: Int = 64, _ handler: (QueuedPacket) -> Verdict) throws(NetfilterError) -> Int {
        var handled = 0
        for _ in 0..<limit {
            switch try receiveDatagram(flags: Int32(MSG_DONTWAIT)) {
            case .packets(let length): handled += handlePackets(length: length, handler)
            case .nothing: return handled
            case .again: continue
            }
        }
        return handled
    }

    /// Waits up to `timeoutMilliseconds` for one datagram and handles its packets, as
    /// `drain` does: a `recv` that blocks (SO_RCVTIMEO bounds it), one syscall where `wait`
    /// and `drain` take three (`poll`, `recv`, and the `recv` that finds the socket empty).
    /// Nothing but a packet ends the wait early, so it suits a thread that awaits no
    /// `wakeup`. Returns the number of packets handled (0: the time passed, or a signal).
    @discardableResult
    public func receive(timeoutMilliseconds: Int32, _ handler: (QueuedPacket) -> Verdict) throws(NetfilterError) -> Int {
        if receiveTimeout != timeoutMilliseconds {
            var limit = timeval(tv_sec: Int(timeoutMilliseconds / 1000), tv_usec: Int(timeoutMilliseconds % 1000) * 1000)
            guard setsockopt(mnl_socket_get_fd(socket), SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size)) == 0 else {
                throw NetfilterError(.receive, queue: queue, errno: .last)
            }
            receiveTimeout = timeoutMilliseconds
        }
        guard case .packets(let length) = try receiveDatagram(flags: 0) else { return 0 }
        return handlePackets(length: length, handler)
    }

    /// What one `recv` on the queue's socket gave.
    private enum Received {
        /// A datagram of this length, in the receive buffer.
        case packets(Int)
        /// Nothing to read (EAGAIN: a non-blocking read found the socket empty, or a blocking
        /// one's SO_RCVTIMEO passed).
        case nothing
        /// A signal interrupted the read, or the kernel reported an overrun (counted): read again.
        case again
    }

    private func receiveDatagram(flags: Int32) throws(NetfilterError) -> Received {
        let received = recv(mnl_socket_get_fd(socket), receiveBuffer.baseAddress, receiveBuffer.count, flags)
        if received >= 0 {
            statistics.datagramsReceived += 1
            return .packets(received)
        }
        let error = Errno.last
        switch error {
        case .resourceTemporarilyUnavailable: return .nothing
        case .interrupted: return .again
        case .noBufferSpace:
            // The kernel could not queue to us: packets were dropped (or accepted
            // with fail-open). Count it and keep serving.
            statistics.receiveBufferOverruns += 1
            return .again
        default: throw NetfilterError(.receive, queue: queue, errno: error)
        }
    }

    private func handlePackets(length: Int, _ handler: (QueuedPacket) -> Verdict) -> Int {
        forEachMessage(length: length) { header in handlePacket(header, handler) }
    }

    // MARK: - Packets and verdicts

    private func forEachMessage(length: Int, _ body: (UnsafeMutablePointer<nlmsghdr>) -> Int) -> Int {
        var remaining = Int32(length)
        var header = receiveBuffer.baseAddress!.assumingMemoryBound(to: nlmsghdr.self)
        var handled = 0
        while mnl_nlmsg_ok(header, remaining) {
            handled += body(header)
            header = mnl_nlmsg_next(header, &remaining)
        }
        return handled
    }

    private static let packetMessageType = UInt16(NFNL_SUBSYS_QUEUE << 8) | UInt16(NFQNL_MSG_PACKET.rawValue)

    private func attribute(_ type: nfqnl_attr_type) -> UnsafeMutablePointer<nlattr>? {
        attributes[Int(type.rawValue)]
    }

    private func attributeUInt32(_ type: nfqnl_attr_type) -> UInt32? {
        guard let attribute = attribute(type), mnl_attr_get_payload_len(attribute) >= 4 else { return nil }
        return UInt32(bigEndian: mnl_attr_get_payload(attribute).loadUnaligned(as: UInt32.self))
    }

    /// Parses one packet message and hands it to `handler`. Returns 1 for a packet, else 0.
    private func handlePacket(_ header: UnsafeMutablePointer<nlmsghdr>, _ handler: (QueuedPacket) -> Verdict) -> Int {
        guard header.pointee.nlmsg_type == Self.packetMessageType else {
            statistics.unexpectedMessages += 1
            return 0
        }
        attributes.update(repeating: nil, count: attributeCount)
        guard nfq_nlmsg_parse(header, attributes) >= 0,
              let packetHeader = attribute(NFQA_PACKET_HDR),
              mnl_attr_get_payload_len(packetHeader) >= 7
        else {
            statistics.unexpectedMessages += 1
            return 0
        }
        // struct nfqnl_msg_packet_hdr is packed: id (be32), hw_protocol (be16), hook (u8).
        let fields = UnsafeRawPointer(mnl_attr_get_payload(packetHeader)!)
        let id = UInt32(bigEndian: fields.loadUnaligned(as: UInt32.self))
        let hardwareProtocol = UInt16(bigEndian: fields.loadUnaligned(fromByteOffset: 4, as: UInt16.self))
        let hook = fields.load(fromByteOffset: 6, as: UInt8.self)

        var payload = UnsafeMutableRawBufferPointer(start: nil, count: 0)
        if let payloadAttribute = attribute(NFQA_PAYLOAD) {
            payload = UnsafeMutableRawBufferPointer(
                start: mnl_attr_get_payload(payloadAttribute),
                count: Int(mnl_attr_get_payload_len(payloadAttribute)))
        }
        let packet = QueuedPacket(
            id: id, hardwareProtocol: hardwareProtocol, hook: hook,
            mark: attributeUInt32(NFQA_MARK),
            payload: payload,
            originalLength: attributeUInt32(NFQA_CAP_LEN).map(Int.init) ?? payload.count,
            info: PacketInfo(rawValue: attributeUInt32(NFQA_SKB_INFO) ?? 0),
            inputInterface: attributeUInt32(NFQA_IFINDEX_INDEV),
            outputInterface: attributeUInt32(NFQA_IFINDEX_OUTDEV))
        statistics.packetsReceived += 1
        let verdict = handler(packet)
        // A held packet gets its verdict later, through sendVerdict(_:for:).
        if verdict.decision != .hold { send(verdict, for: packet) }
        return 1
    }

    /// Sends a verdict; a returned payload travels as its own iovec, never copied.
    func send(_ verdict: Verdict, for packet: QueuedPacket) {
        var verdict = verdict
        if let length = verdict.payloadLength,
           length > packet.payload.count || length + 4 > Int(UInt16.max) || packet.isTruncated {
            // Never send back a truncated copy or one an attribute cannot hold:
            // the kernel would trim the real packet to it. Dropping is the safe answer.
            verdict = .drop
            statistics.verdictFailures += 1
        }
        let header = nfq_nlmsg_put(sendBuffer.baseAddress!.assumingMemoryBound(to: CChar.self),
                                   Int32(NFQNL_MSG_VERDICT.rawValue), UInt32(queue))!
        let code: Int32
        switch verdict.decision {
        case .accept: code = NF_ACCEPT
        case .drop: code = NF_DROP
        case .repeat: code = NF_REPEAT
        case .hold: return
        }
        nfq_nlmsg_verdict_put(header, Int32(bitPattern: packet.id), code)
        if let mark = verdict.mark { nfq_nlmsg_verdict_put_mark(header, mark) }

        var count = 1
        if let length = verdict.payloadLength {
            let attribute = mnl_nlmsg_get_payload_tail(header)!.assumingMemoryBound(to: nlattr.self)
            attribute.pointee.nla_type = UInt16(NFQA_PAYLOAD.rawValue)
            attribute.pointee.nla_len = UInt16(4 + length)
            let headerLength = Int(header.pointee.nlmsg_len) + 4
            let aligned = vpm_netlink_align(length)
            header.pointee.nlmsg_len = UInt32(headerLength + aligned)
            vectors[0] = iovec(iov_base: UnsafeMutableRawPointer(header), iov_len: headerLength)
            vectors[1] = iovec(iov_base: packet.payload.baseAddress, iov_len: length)
            vectors[2] = iovec(iov_base: padding, iov_len: aligned - length)
            count = aligned > length ? 3 : 2
            statistics.payloadsReturned += 1
        } else {
            vectors[0] = iovec(iov_base: UnsafeMutableRawPointer(header), iov_len: Int(header.pointee.nlmsg_len))
        }
        message.pointee.msg_iovlen = count
        while sendmsg(mnl_socket_get_fd(socket), message, 0) < 0 {
            if Errno.last == .interrupted { continue }
            statistics.verdictFailures += 1
            return
        }
        statistics.verdictsSent += 1
    }

    // MARK: - Configuration

    private func setReceiveBuffer(_ size: Int) {
        var value = Int32(clamping: size)
        let fd = mnl_socket_get_fd(socket)
        let length = socklen_t(MemoryLayout<Int32>.size)
        // SO_RCVBUFFORCE passes rmem_max with CAP_NET_ADMIN; otherwise take what SO_RCVBUF gives.
        if setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &value, length) < 0 {
            _ = setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &value, length)
        }
    }

    /// Sends one config message with NLM_F_ACK and waits for the kernel's answer.
    private func configure(
        _ call: NetfilterError.Call, _ build: (UnsafeMutablePointer<nlmsghdr>) -> Void
    ) throws(NetfilterError) {
        let header = nfq_nlmsg_put(sendBuffer.baseAddress!.assumingMemoryBound(to: CChar.self),
                                   Int32(NFQNL_MSG_CONFIG.rawValue), UInt32(queue))!
        build(header)
        sequence &+= 1
        header.pointee.nlmsg_seq = sequence
        header.pointee.nlmsg_flags |= UInt16(NLM_F_ACK)
        guard mnl_socket_sendto(socket, header, Int(header.pointee.nlmsg_len)) >= 0 else {
            throw NetfilterError(call, queue: queue, errno: .last)
        }
        try waitForAcknowledgement(call)
    }

    private func waitForAcknowledgement(_ call: NetfilterError.Call) throws(NetfilterError) {
        let expected = sequence
        for _ in 0..<64 {
            guard try wait(timeoutMilliseconds: 2000) else {
                throw NetfilterError(call, queue: queue, errno: .timedOut)
            }
            let received = recv(mnl_socket_get_fd(socket), receiveBuffer.baseAddress, receiveBuffer.count, 0)
            if received < 0 {
                let error = Errno.last
                if error == .interrupted || error == .noBufferSpace { continue }
                throw NetfilterError(call, queue: queue, errno: error)
            }
            var answer: Int32?
            _ = forEachMessage(length: received) { header in
                if header.pointee.nlmsg_type == UInt16(NLMSG_ERROR), header.pointee.nlmsg_seq == expected {
                    // struct nlmsgerr starts with the (negative) errno; 0 is an acknowledgement.
                    answer = mnl_nlmsg_get_payload(header)!.load(as: Int32.self)
                    return 0
                }
                if header.pointee.nlmsg_type == Self.packetMessageType {
                    // A packet that arrived while we were configuring: let the kernel run the
                    // hook again, so it comes back once the queue is fully set up.
                    return handlePacket(header) { _ in Verdict(.repeat) }
                }
                return 0
            }
            if let answer {
                if answer == 0 { return }
                let error = Errno(rawValue: -answer)
                throw NetfilterError(call, queue: queue, errno: error,
                                     queueOwnedByAnotherProcess: call == .bindQueue && error == .notPermitted
                                        && Self.hasNetworkAdministration())
            }
        }
        throw NetfilterError(call, queue: queue, errno: .timedOut)
    }
}

extension NetfilterQueue {
    /// Whether CAP_NET_ADMIN is in this process's effective set (/proc/self/status, CapEff).
    public static func hasNetworkAdministration() -> Bool {
        guard let file = fopen("/proc/self/status", "r") else { return geteuid() == 0 }
        defer { fclose(file) }
        var line = [CChar](repeating: 0, count: 256)
        while fgets(&line, Int32(line.count), file) != nil {
            let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            guard text.hasPrefix("CapEff:") else { continue }
            let hex = text.dropFirst(7).filter { !$0.isWhitespace }
            return (UInt64(hex, radix: 16) ?? 0) & (1 << 12) != 0
        }
        return geteuid() == 0
    }
}

extension Errno {
    /// The calling thread's errno, read right after a failed call.
    static var last: Errno { Errno(rawValue: errno) }
}
