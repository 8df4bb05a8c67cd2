import CInterceptionShim
import Control
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Packet
import Policy
import Synchronization

/// Answers the program's intercepted system calls, one handler per call, each small:
/// read the arguments from the program, decide, act on a duplicate of its socket, answer.
/// Whatever is not ours (another port, another kind of socket) is let through at once
/// (SECCOMP_USER_NOTIF_FLAG_CONTINUE), and the kernel runs the call as usual.
final class NotificationHandler: Sendable {
    private let listener: Int32
    private let settings: InterceptionSettings
    /// Virtual ports this instance's sockets are bound to → the initial port the program
    /// asked for: what getsockname() reports. One supervisor serves the whole process tree,
    /// so forked workers and re-executed programs share it.
    private let initialPorts = Mutex<[VirtualPortKey: UInt16]>([:])
    /// Set once the first bind succeeded: until then no getsockname() needs an answer of ours.
    private let hasVirtualPorts = Atomic<Bool>(false)
    private let threadGroups = ThreadGroups()
    /// sendto() registrations made, by socket and destination, with when (milliseconds of
    /// uptime): a socket's later datagrams to the same destination go by without a trip to
    /// the engine until the registration is due again.
    private let sendtoRegistrations = Mutex<[SendtoKey: UInt64]>([:])

    struct SendtoKey: Hashable {
        var process: Int32
        var localPort: UInt16
        var remote: String
    }

    struct VirtualPortKey: Hashable {
        var transport: TransportProtocol
        var port: UInt16
    }

    init(listener: Int32, settings: InterceptionSettings) {
        self.listener = listener
        self.settings = settings
    }

    /// Handles one notification. Binds and connects that need the engine run on a thread
    /// of their own (a bind may wait for a free port); the rest is answered here.
    func handle(_ notification: seccomp_notif) {
        let call = Call(notification)
        switch call.number {
        case vpm_syscall_bind, vpm_syscall_connect:
            let isBind = call.number == vpm_syscall_bind
            switch socketCall(call) {
            case .notOurs: answer(call, .continue)
            case .unreachable(let what, let code):
                // A bind we cannot see or act on must not reach the real port: refuse it.
                guard isBind else { return answer(call, .continue) }
                say("vpm: cannot intercept pid \(call.pid)'s bind (\(what): \(String(cString: strerror(code)))); refusing it rather than letting it bind the real port")
                answer(call, .error(EACCES))
            case .ours(let socket, let address, let transport):
                Thread.detachNewThread { [self] in
                    if isBind { bind(call, socket, address, transport) } else { connect(call, socket, address, transport) }
                }
            }
        case vpm_syscall_getsockname:
            getsockname(call)
        case vpm_syscall_sendto:
            send(call, destination: call.arguments.4, length: call.arguments.5)
        case vpm_syscall_sendmsg:
            // struct msghdr starts with msg_name (a pointer) and msg_namelen.
            guard let header = ProgramMemory(pid: call.pid).read(call.arguments.1, count: 12) else { return answer(call, .continue) }
            let name = header.prefix(8).reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            let length = header.suffix(4).reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            guard name != 0 else { return answer(call, .continue) }
            send(call, destination: name, length: length)
        default:
            answer(call, .continue)
        }
    }

    // MARK: - bind

    /// Asks the engine for the AID's virtual port, handing it the program's socket: the
    /// engine binds it (to the address the program asked for) and marks it.
    private func bind(_ call: Call, _ socket: SendableSocket, _ requested: SocketAddress, _ transport: TransportProtocol) {
        // Already on this instance's virtual port for that initial port: a bind the engine did,
        // restarted by a signal (older kernels), or a program binding twice. Answer as before.
        if let local = socket.value.localAddress, local.port != 0,
           initialPorts.withLock({ $0[VirtualPortKey(transport: transport, port: local.port)] }) == requested.port {
            return answer(call, .success, closing: socket)
        }
        var request = ControlRequest(.bind)
        request.aid = settings.aid.name
        request.initialPort = requested.port
        request.transport = transport.name
        request.pid = InterceptedSocket.threadGroup(of: call.pid)
        request.localAddress = "\(requested.address)"
        let what = "port \(requested.port)/\(transport.name) for AID \(settings.aid)"
        let response: ControlResponse
        do {
            // The engine binds the socket itself (and marks it as the instance's).
            response = try ControlSocket.send(request, to: settings.socketPath, descriptor: socket.value.descriptor,
                                              timeoutSeconds: settings.answerTimeoutSeconds)
        } catch {
            say("vpm: cannot bind \(what): \(error)")
            // A user the control socket refuses is refused (EACCES), as the engine's own
            // refusals are; no engine to ask: the address cannot be had (EADDRNOTAVAIL).
            let refused = (error as? ControlError)?.code == EACCES
            return answer(call, .error(refused ? EACCES : EADDRNOTAVAIL), closing: socket)
        }
        guard let virtualPort = response.virtualPort else {
            say("vpm: cannot bind \(what): \(response.error ?? "the engine gave no virtual port")")
            return answer(call, .error(Self.errorNumber(response.errorCode) ?? EADDRNOTAVAIL), closing: socket)
        }
        var actual = requested
        actual.port = virtualPort
        initialPorts.withLock { $0[VirtualPortKey(transport: transport, port: virtualPort)] = requested.port }
        hasVirtualPorts.store(true, ordering: .releasing)
        if settings.debug { say("vpm: debug: pid \(call.pid) bind \(requested)/\(transport.name) -> \(actual) (AID \(settings.aid))") }
        answer(call, .success, closing: socket)
    }

    // MARK: - connect

    /// Registers the connection with the engine (local and cooperative modes route it by
    /// this AID): the socket goes along and the engine reads its address from it. Then the
    /// kernel connects as the program asked.
    private func connect(_ call: Call, _ socket: SendableSocket, _ remote: SocketAddress, _ transport: TransportProtocol) {
        defer { answer(call, .continue, closing: socket) }
        if transport == .tcp && socket.value.isConnecting { return }
        _ = register(call, socket, remote, transport)
    }

    /// Tells the engine that the socket's local address:port belongs to this AID; returns
    /// that address, or nil when it could not (said on standard error: the call goes on).
    private func register(_ call: Call, _ socket: SendableSocket, _ remote: SocketAddress, _ transport: TransportProtocol) -> SocketAddress? {
        let what = "the connection to \(remote)/\(transport.name) for AID \(settings.aid)"
        guard var local = socket.value.localAddress else {
            say("vpm: cannot register \(what) (connecting anyway): the local address is not known")
            return nil
        }
        if local.port == 0 {
            // Not bound yet: take an ephemeral port now, so the engine learns it before the
            // connection's first packet.
            let error = socket.value.bind(SocketAddress(local.family == .ipv4 ? IPAddress(ipv4: 0) : .any, port: 0, family: local.family))
            guard error == 0, let bound = socket.value.localAddress, bound.port != 0 else {
                say("vpm: cannot register \(what) (connecting anyway): cannot take an ephemeral local port first")
                return nil
            }
            local = bound
        }
        var request = ControlRequest(.connect)
        request.aid = settings.aid.name
        request.transport = transport.name
        // Where it connects: for a socket bound to the wildcard, the engine picks the source
        // address the routing table would.
        request.remoteAddress = "\(remote.address)"
        request.remotePort = remote.port
        do {
            let response = try ControlSocket.send(request, to: settings.socketPath, descriptor: socket.value.descriptor,
                                                  timeoutSeconds: 5)
            if let error = response.error { throw ControlError(error) }
            if settings.debug { say("vpm: debug: pid \(call.pid) \(call.number == vpm_syscall_connect ? "connect" : "send") \(local) -> \(remote)/\(transport.name) registered (AID \(settings.aid))") }
            return local
        } catch {
            say("vpm: cannot register \(what) (connecting anyway): \(error)")
            return nil
        }
    }

    // MARK: - sendto, sendmsg

    /// An unconnected UDP socket's datagram to a multiplexed initial port (the filter hands
    /// over sendto() calls that name a destination and sendmsg() calls, and only where UDP
    /// clients are routed by AID): registered like a connect(), once per socket and
    /// destination until the registration is due again; then the kernel sends it as asked.
    private func send(_ call: Call, destination: UInt64, length: UInt64) {
        guard case .ours(let socket, let remote, let transport) = socketCall(call, address: destination, length: length),
              transport == .udp else {
            return answer(call, .continue)
        }
        let now = DispatchTime.now().uptimeNanoseconds / 1_000_000
        let process = InterceptedSocket.threadGroup(of: call.pid) ?? call.pid
        if let local = socket.value.localAddress, local.port != 0 {
            let key = SendtoKey(process: process, localPort: local.port, remote: "\(remote)")
            let fresh = sendtoRegistrations.withLock { registrations in
                registrations[key].map { now &- $0 < settings.sendRegistrationMilliseconds } ?? false
            }
            if fresh { return answer(call, .continue, closing: socket) }
        }
        Thread.detachNewThread { [self] in
            // connect()'s registration: binds an ephemeral port first if needed, then tells
            // the engine; the answer lets the call through.
            let registered = register(call, socket, remote, transport)
            if let local = registered {
                sendtoRegistrations.withLock { registrations in
                    if registrations.count >= 4096 { registrations.removeAll(keepingCapacity: true) }
                    registrations[SendtoKey(process: process, localPort: local.port, remote: "\(remote)")] = now
                }
            }
            answer(call, .continue, closing: socket)
        }
    }

    // MARK: - getsockname

    /// For a socket on one of this instance's virtual ports (listening or accepted), the
    /// initial port; anything else is the kernel's to answer.
    private func getsockname(_ call: Call) {
        guard hasVirtualPorts.load(ordering: .acquiring) else { return answer(call, .continue) }
        let (number, addressPointer, lengthPointer) = (Int32(truncatingIfNeeded: call.arguments.0), call.arguments.1, call.arguments.2)
        guard let socket = InterceptedSocket(pid: call.pid, number: number, threadGroups: threadGroups, stillWaiting: { isPending(call) })
        else { return answer(call, .continue) }
        let (transport, name) = (socket.transport, socket.localAddress)
        socket.close()
        guard let transport, var local = name,
              let initial = initialPorts.withLock({ $0[VirtualPortKey(transport: transport, port: local.port)] })
        else { return answer(call, .continue) }
        local.port = initial
        let memory = ProgramMemory(pid: call.pid)
        guard let offered = memory.readLength(lengthPointer) else { return answer(call, .error(EFAULT)) }
        guard Int32(bitPattern: offered) >= 0 else { return answer(call, .error(EINVAL)) }
        // As the kernel does: at most what the program offered, and the full length back.
        let bytes = Array(local.bytes.prefix(Int(offered)))
        guard isPending(call) else { return }
        guard memory.write(bytes, to: addressPointer), memory.writeLength(UInt32(local.bytes.count), to: lengthPointer) else {
            return answer(call, .error(EFAULT))
        }
        answer(call, .success)
    }

    // MARK: - Helpers

    /// The socket and the IPv4/IPv6 address of a bind() or connect() to one of our initial
    /// ports; nil when the call is not ours.
    private enum SocketCall {
        case notOurs
        case ours(SendableSocket, SocketAddress, TransportProtocol)
        /// The address or the socket could not be read (what failed, errno).
        case unreachable(String, Int32)
    }

    /// The socket and the IPv4/IPv6 address of a bind() or connect() to one of our initial
    /// ports; `.notOurs` when the call is not ours.
    /// bind and connect: (fd, address, length); sendto and sendmsg pass where their
    /// destination is.
    private func socketCall(_ call: Call, address: UInt64? = nil, length: UInt64? = nil) -> SocketCall {
        let (number, pointer, length) = (Int32(truncatingIfNeeded: call.arguments.0), address ?? call.arguments.1,
                                         Int(truncatingIfNeeded: length ?? call.arguments.2))
        // Shorter than an IPv4 address, or absurdly long: the kernel's EINVAL is the answer.
        guard length >= SocketAddress.minimumLength, length <= 128 else { return .notOurs }
        guard let bytes = ProgramMemory(pid: call.pid).read(pointer, count: length) else {
            let code = errno
            // EFAULT: the program's own bad pointer, which the kernel refuses too.
            return code == EFAULT || !isPending(call) ? .notOurs : .unreachable("reading its address", code)
        }
        // Most connects go elsewhere: answer them before touching the program's socket.
        guard let address = SocketAddress(bytes: bytes), address.port != 0,
              settings.initialPorts.contains(where: { $0.port == address.port }) else { return .notOurs }
        guard let socket = InterceptedSocket(pid: call.pid, number: number, threadGroups: threadGroups, stillWaiting: { isPending(call) }) else {
            let code = errno
            // Gone, or not a descriptor of the program's (EBADF: the kernel says so itself).
            return code == EBADF || code == ESRCH || !isPending(call) ? .notOurs : .unreachable("taking its socket", code)
        }
        guard let transport = socket.transport, settings.isMultiplexed(address.port, transport) else { return .notOurs }
        return .ours(SendableSocket(value: socket), address, transport)
    }

    private func isPending(_ call: Call) -> Bool { vpm_notification_valid(listener, call.id) == 1 }

    private enum Answer {
        case `continue`, success
        case error(Int32)
    }

    private func answer(_ call: Call, _ answer: Answer, closing socket: SendableSocket? = nil) {
        socket?.value.close()
        switch answer {
        case .continue: _ = vpm_notification_respond(listener, call.id, 0, 0, 1)
        case .success: _ = vpm_notification_respond(listener, call.id, 0, 0, 0)
        case .error(let code): _ = vpm_notification_respond(listener, call.id, 0, -code, 0)
        }
    }

    private func say(_ line: String) {
        let text = line.hasSuffix("\n") ? line : line + "\n"
        text.utf8CString.withUnsafeBufferPointer { buffer in
            _ = Glibc.write(STDERR_FILENO, buffer.baseAddress, buffer.count - 1)
        }
    }

    /// The errno the engine names for the program ("EADDRINUSE" …).
    static func errorNumber(_ name: String?) -> Int32? {
        switch name {
        case "EADDRINUSE": EADDRINUSE
        case "EADDRNOTAVAIL": EADDRNOTAVAIL
        case "EACCES": EACCES
        case "EPERM": EPERM
        case "EINVAL": EINVAL
        default: nil
        }
    }
}

/// One intercepted call: who made it and its arguments.
struct Call: Sendable {
    var id: UInt64
    var pid: Int32
    var number: Int32
    var arguments: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64)

    init(_ notification: seccomp_notif) {
        id = notification.id
        pid = Int32(bitPattern: notification.pid)
        number = notification.data.nr
        arguments = notification.data.args
    }
}

/// A socket handed to the thread that finishes its call (it is used by that thread only).
struct SendableSocket: @unchecked Sendable {
    let value: InterceptedSocket
}
