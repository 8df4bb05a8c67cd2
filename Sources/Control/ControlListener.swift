import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Who is on the other end of a control connection (SO_PEERCRED: the kernel's word, not
/// the client's).
public struct ControlPeer: Sendable, Equatable {
    public var pid: Int32
    public var uid: UInt32
    /// The primary group and the supplementary groups (SO_PEERGROUPS).
    public var gids: [UInt32]

    public init(pid: Int32, uid: UInt32, gids: [UInt32]) {
        self.pid = pid
        self.uid = uid
        self.gids = gids
    }
}

/// The engine's side of the control socket: accepts connections, reads the peer's
/// credentials, reads one request and writes one response (or hands a streamed request its
/// `ControlStream`), each connection on its own
/// thread (a `bind` may wait for a virtual port to free up; nobody else waits for it).
/// What a peer may ask is the handler's decision; who may connect at all is the socket
/// file's mode: 0600 (root), or 0660 owned by the control group.
public final class ControlListener: @unchecked Sendable {
    public let path: String
    private let descriptor: Int32
    private let handler: @Sendable (ControlRequest, ControlPeer, Int32?) -> ControlResponse
    /// Requests answered by a stream of lines (`ControlRequest.isStreamed`: a watch, the
    /// flows in pieces): the handler writes to the stream until it ends; nil: refused.
    private let stream: (@Sendable (ControlRequest, ControlPeer, ControlStream) -> Void)?
    /// Signalled when the accept loop has returned: only then may the descriptor be
    /// closed, or a later socket reusing its number could be accepted on by this loop.
    private let finished = DispatchSemaphore(value: 0)
    private let started = NSLock()
    private var running = false
    /// Connections being answered (each on its thread, watchers included).
    private let active = Mutex(0)
    /// More at once are answered "busy" at once: a local user cannot make the engine start
    /// threads without end.
    public static let maximumConnections = 64
    /// The time a peer has to send its whole request line, and its longest allowed length.
    public static let requestTimeout: Duration = .seconds(2)
    public static let requestLimit = 1 << 16

    /// Binds `path` (mode 0600, or 0660 owned by `group`; its directory is created 0755).
    /// Refuses when another engine answers there; removes a stale socket file left by an
    /// engine that died.
    public init(path: String, group: UInt32? = nil, stream: (@Sendable (ControlRequest, ControlPeer, ControlStream) -> Void)? = nil,
                handler: @escaping @Sendable (ControlRequest, ControlPeer, Int32?) -> ControlResponse) throws {
        self.path = path
        self.handler = handler
        self.stream = stream
        if FileManager.default.fileExists(atPath: path) {
            if let other = try? ControlSocket.connect(to: path) {
                Glibc.close(other)
                throw ControlError("another engine answers at \(path): stop it first, or give this one --socket PATH")
            }
            unlink(path)
        }
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty {
            try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                     attributes: [.posixPermissions: 0o755])
        }
        descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { throw ControlError("cannot create the control socket: \(String(cString: strerror(errno)))") }
        var address = try ControlSocket.unixAddress(path)
        // Create it 0600 from the start: no window in which others could connect.
        let previous = umask(0o177)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        umask(previous)
        guard bound == 0, listen(descriptor, SOMAXCONN) == 0 else {
            let message = String(cString: strerror(errno))
            Glibc.close(descriptor)
            throw ControlError("cannot listen on \(path): \(message)")
        }
        // The group first, then the mode: members get in only once the owner is right.
        if let group, chown(path, uid_t.max, group) != 0 || chmod(path, 0o660) != 0 {
            let message = String(cString: strerror(errno))
            Glibc.close(descriptor)
            unlink(path)
            throw ControlError("cannot give \(path) to the control group (gid \(group)): \(message)")
        }
    }

    /// Serves requests on a background thread until `close()`.
    public func start() {
        started.withLock { running = true }
        let thread = Thread { [self] in
            serve()
            finished.signal()
        }
        thread.name = "vpm-control"
        thread.start()
    }

    private func serve() {
        while true {
            let connection = accept(descriptor, nil, nil)
            if connection < 0 {
                if errno == EINTR || errno == ECONNABORTED { continue }
                return  // closed by `close()`
            }
            let admitted = active.withLock { count in
                guard count < Self.maximumConnections else { return false }
                count += 1
                return true
            }
            guard admitted else {
                refuse(connection, ControlResponse(error: "busy: \(Self.maximumConnections) control connections at once; try again in a moment"))
                continue
            }
            let thread = Thread { [self] in
                answer(connection)
                Glibc.close(connection)
                active.withLock { $0 -= 1 }
            }
            thread.name = "vpm-control-connection"
            thread.start()
        }
    }

    /// Answers on the accept thread without reading, never blocking it for long.
    private func refuse(_ connection: Int32, _ response: ControlResponse) {
        var timeout = timeval(tv_sec: 0, tv_usec: 100_000)
        setsockopt(connection, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        if var data = try? JSONEncoder().encode(response) {
            data.append(UInt8(ascii: "\n"))
            try? ControlSocket.writeAll(data, to: connection, path: path)
        }
        Glibc.close(connection)
    }

    private func answer(_ connection: Int32) {
        let deadline = ContinuousClock.now + Self.requestTimeout
        var timeout = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(connection, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(connection, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let response: ControlResponse
        // A descriptor the peer sent with its request (a bind's socket): the handler uses
        // it while answering; it is closed here in every case.
        var descriptor: Int32?
        defer { if let descriptor { Glibc.close(descriptor) } }
        let peer = peerCredentials(connection)
        var failure = ""
        if peer == nil {
            response = ControlResponse(error: "permission denied: the kernel did not say who is asking (SO_PEERCRED)", errorCode: "EACCES")
        } else if let request = read(connection, deadline: deadline, descriptor: &descriptor, failure: &failure) {
            // Without a stream handler, flows in pieces get the one-line answer: one line
            // without `more` is also the last piece.
            if request.isStreamed && (stream != nil || request.command == .watch) {
                if let stream {
                    stream(request, peer!, ControlStream(connection: connection, path: path))
                    return
                }
                response = ControlResponse(error: "this engine does not stream its answers")
            } else {
                response = handler(request, peer!, descriptor)
            }
            // Closed before the answer goes out: the caller may close its own descriptor at once
            // and expect the socket gone (a program that binds, closes and binds again).
            if let received = descriptor { Glibc.close(received) }
            descriptor = nil
        } else {
            response = ControlResponse(error: failure)
        }
        guard var data = try? JSONEncoder().encode(response) else { return }
        data.append(UInt8(ascii: "\n"))
        try? ControlSocket.writeAll(data, to: connection, path: path)
    }

    /// One request line, whole within `deadline` and at most `requestLimit` bytes; nil with
    /// `failure` saying why not.
    private func read(_ connection: Int32, deadline: ContinuousClock.Instant, descriptor: inout Int32?,
                      failure: inout String) -> ControlRequest? {
        let line: Data
        do {
            line = try ControlSocket.readLine(from: connection, path: path, limit: Self.requestLimit, descriptor: &descriptor,
                                              deadline: deadline)
        } catch {
            failure = "\(error)"
            return nil
        }
        guard let request = try? JSONDecoder().decode(ControlRequest.self, from: line) else {
            failure = "could not read a request; send one JSON line such as {\"command\":\"flows\"}"
            return nil
        }
        return request
    }

    /// SO_PEERCRED and SO_PEERGROUPS: the kernel's word on who connected, whatever the
    /// socket file's mode says.
    private func peerCredentials(_ connection: Int32) -> ControlPeer? {
        var credentials = PeerCredentials()
        var length = socklen_t(MemoryLayout<PeerCredentials>.size)
        guard getsockopt(connection, SOL_SOCKET, SO_PEERCRED, &credentials, &length) == 0 else { return nil }
        var groups = [UInt32](repeating: 0, count: 256)
        var groupsLength = socklen_t(groups.count * MemoryLayout<UInt32>.size)
        let peerGroups: Int32 = 59  // SO_PEERGROUPS (Linux 4.13)
        var gids = [credentials.gid]
        if getsockopt(connection, SOL_SOCKET, peerGroups, &groups, &groupsLength) == 0 {
            gids += groups.prefix(Int(groupsLength) / MemoryLayout<UInt32>.size).filter { $0 != credentials.gid }
        }
        return ControlPeer(pid: credentials.pid, uid: credentials.uid, gids: gids)
    }

    /// Stops accepting and removes the socket file.
    public func close() {
        shutdown(descriptor, Int32(SHUT_RDWR))  // wakes the accept loop
        if started.withLock({ running }) { finished.wait() }
        Glibc.close(descriptor)
        unlink(path)
    }
}

/// struct ucred (pid, uid, gid): Swift's Glibc leaves it out without _GNU_SOURCE.
private struct PeerCredentials {
    var pid: Int32 = 0
    var uid: UInt32 = 0
    var gid: UInt32 = 0
}
