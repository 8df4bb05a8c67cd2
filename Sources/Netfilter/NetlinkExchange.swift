internal import CNetfilterQueue
internal import SystemPackage
#if canImport(Glibc)
internal import Glibc
#endif

/// A request to the kernel over a NETLINK_NETFILTER socket and the reading of its answer:
/// what conntrack's dumps and deletes and the nftables counter read have in common. The
/// answer is the messages from the kernel (port 0) that carry the request's sequence number
/// and the socket's port id; whoever asked decides which of them ends it.
enum NetlinkExchange {
    /// A NETLINK_NETFILTER socket bound to an automatic port id, close-on-exec (the helpers
    /// the engine and tests spawn must not inherit it).
    static func openSocket(_ call: NetfilterError.Call) throws(NetfilterError) -> OpaquePointer {
        guard let socket = mnl_socket_open2(NETLINK_NETFILTER, Int32(SOCK_CLOEXEC.rawValue)) else {
            throw NetfilterError(call, queue: 0, errno: .last)
        }
        guard mnl_socket_bind(socket, 0, pid_t(MNL_SOCKET_AUTOPID)) >= 0 else {
            let error = Errno.last
            mnl_socket_close(socket)
            throw NetfilterError(call, queue: 0, errno: error)
        }
        return socket
    }

    /// Sends the request `header` heads, retrying when a signal interrupts.
    static func send(
        _ header: UnsafeMutablePointer<nlmsghdr>, on socket: OpaquePointer, _ call: NetfilterError.Call
    ) throws(NetfilterError) {
        while mnl_socket_sendto(socket, header, Int(header.pointee.nlmsg_len)) < 0 {
            let error = Errno.last
            if error == .interrupted { continue }
            throw NetfilterError(call, queue: 0, errno: error)
        }
    }

    /// Receives the answer to request `sequence` into `buffer`, handing each of its messages
    /// to `each` until `each` says the answer is complete. Throws ETIMEDOUT when the kernel
    /// says nothing for `timeoutMilliseconds`.
    static func readAnswer(
        on socket: OpaquePointer, sequence: UInt32, into buffer: UnsafeMutableRawBufferPointer,
        timeoutMilliseconds: Int32, _ call: NetfilterError.Call,
        _ each: (UnsafeMutablePointer<nlmsghdr>) throws(NetfilterError) -> Bool
    ) throws(NetfilterError) {
        let fd = mnl_socket_get_fd(socket)
        let portID = mnl_socket_get_portid(socket)
        var sender = sockaddr_nl()
        var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        while true {
            let ready = poll(&descriptor, 1, timeoutMilliseconds)
            if ready == 0 { throw NetfilterError(call, queue: 0, errno: .timedOut) }
            if ready < 0 {
                let error = Errno.last
                if error == .interrupted { continue }
                throw NetfilterError(call, queue: 0, errno: error)
            }
            var length = socklen_t(MemoryLayout<sockaddr_nl>.size)
            let received = withUnsafeMutablePointer(to: &sender) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address in
                    recvfrom(fd, buffer.baseAddress, buffer.count, 0, address, &length)
                }
            }
            if received < 0 {
                let error = Errno.last
                if error == .interrupted { continue }
                throw NetfilterError(call, queue: 0, errno: error)
            }
            guard sender.nl_pid == 0 else { continue }  // only the kernel answers
            var remaining = Int32(received)
            var message = buffer.baseAddress!.assumingMemoryBound(to: nlmsghdr.self)
            while mnl_nlmsg_ok(message, remaining) {
                defer { message = mnl_nlmsg_next(message, &remaining) }
                guard message.pointee.nlmsg_seq == sequence, message.pointee.nlmsg_pid == portID else { continue }
                if try each(message) { return }
            }
        }
    }

    /// The negative errno an NLMSG_ERROR (or a DONE ending a failed dump) carries; 0 is an
    /// acknowledgement.
    static func errorCode(_ message: UnsafeMutablePointer<nlmsghdr>) -> Int32 {
        mnl_nlmsg_get_payload_len(message) >= 4
            ? UnsafeRawPointer(mnl_nlmsg_get_payload(message)!).loadUnaligned(as: Int32.self) : -EPROTO
    }
}
