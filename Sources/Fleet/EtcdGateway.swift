public import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
public import NIOSSL
import Synchronization

/// etcd's v3 API through its JSON gateway (`/v3/...`, etcd 3.4 and later), spoken with
/// async-http-client: the few calls a fleet needs — leases, put, delete, a prefix read and
/// a prefix watch. Any listed member will do: a call that cannot reach one tries the next,
/// and the member that answered last is tried first.
///
/// Keys and values travel base64-encoded, 64-bit numbers as JSON strings (proto3's JSON).
public final class EtcdGateway: Sendable {
    public struct Credentials: Sendable {
        public var user: String
        public var password: String
        public init(user: String, password: String) {
            self.user = user
            self.password = password
        }
    }

    public struct KeyValue: Sendable, Equatable {
        public var key: String
        public var value: [UInt8]
        public var lease: Int64
    }

    public enum Event: Sendable, Equatable {
        case put(KeyValue)
        case delete(key: String)
    }

    private let endpoints: [String]
    private let client: HTTPClient
    private let credentials: Credentials?
    /// The member that answered last, and the authentication token (when etcd has users).
    private let state = Mutex<(preferred: Int, token: String?)>((0, nil))

    public init(endpoints: [String], credentials: Credentials?, tls: TLSConfiguration?) {
        precondition(!endpoints.isEmpty)
        self.endpoints = endpoints.map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 }
        self.credentials = credentials
        var configuration = HTTPClient.Configuration()
        configuration.tlsConfiguration = tls
        configuration.timeout = .init(connect: .seconds(2), read: nil)
        // A member that refuses the connection (stopped, killed) fails the call at once, and
        // the next member is asked. By default the pool would retry the connection until the
        // connect timeout, so each dead member cost 2 s: publishing after the preferred
        // member died took 2.2 to 2.6 s, and noticing that every member was gone over 6 s.
        configuration.connectionPool.retryConnectionEstablishment = false
        configuration.connectionPool.idleTimeout = .seconds(30)
        client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    public func shutdown() async {
        try? await client.shutdown()
    }

    // MARK: - Calls

    /// A lease that lives `seconds` unless kept alive; its ID.
    public func grantLease(seconds: Int) async throws(EtcdError) -> Int64 {
        let answer = try await call("lease/grant", ["TTL": seconds])
        guard let id = Self.number(answer["ID"]), id != 0 else { throw EtcdError("etcd granted no lease: \(answer)") }
        return id
    }

    /// Renews the lease; its remaining time to live, 0 once etcd has forgotten it.
    public func keepAlive(lease: Int64) async throws(EtcdError) -> Int64 {
        let answer = try await call("lease/keepalive", ["ID": String(lease)])
        // A stream's answer: {"result": …} or, when the member cannot serve it (no leader
        // during an election), {"error": …}, which says nothing about the lease.
        if let error = answer["error"] as? [String: Any] {
            throw EtcdError("etcd could not renew the lease: \(error["message"] ?? error)")
        }
        let result = answer["result"] as? [String: Any] ?? answer
        // JSON leaves out a zero TTL: the lease is gone.
        return Self.number(result["TTL"]) ?? 0
    }

    public func revokeLease(_ lease: Int64) async throws(EtcdError) {
        _ = try await call("lease/revoke", ["ID": String(lease)])
    }

    public func put(_ key: String, value: [UInt8], lease: Int64) async throws(EtcdError) {
        _ = try await call("kv/put", ["key": Self.base64(key), "value": Data(value).base64EncodedString(), "lease": String(lease)])
    }

    public func delete(_ key: String) async throws(EtcdError) {
        _ = try await call("kv/deleterange", ["key": Self.base64(key)])
    }

    /// The entry at exactly `key`, if there is one.
    public func get(_ key: String) async throws(EtcdError) -> KeyValue? {
        let answer = try await call("kv/range", ["key": Self.base64(key)])
        return (answer["kvs"] as? [[String: Any]] ?? []).compactMap(Self.keyValue).first
    }

    /// Every key under `prefix`, and the store's revision they were read at.
    public func range(prefix: String) async throws(EtcdError) -> (revision: Int64, entries: [KeyValue]) {
        let answer = try await call("kv/range", ["key": Self.base64(prefix), "range_end": Self.base64(Self.rangeEnd(prefix))])
        let header = answer["header"] as? [String: Any] ?? [:]
        let entries = (answer["kvs"] as? [[String: Any]] ?? []).compactMap(Self.keyValue)
        return (Self.number(header["revision"]) ?? 0, entries)
    }

    /// Watches `prefix` from `revision` on: `events` gets each batch with the revision it
    /// brings the view to, until the stream ends (the member went away), the task is
    /// cancelled, or etcd refuses (a compacted revision: read the range again).
    public func watch(prefix: String, from revision: Int64,
                      events: @Sendable ([Event], Int64) -> Void) async throws(EtcdError) {
        let body: [String: Any] = ["create_request": [
            "key": Self.base64(prefix), "range_end": Self.base64(Self.rangeEnd(prefix)), "start_revision": String(revision),
        ]]
        let response = try await send("watch", body, timeout: .seconds(5))
        var pending: [UInt8] = []
        do {
            for try await buffer in response.body {
                pending.append(contentsOf: buffer.readableBytesView)
                while let end = pending.firstIndex(of: UInt8(ascii: "\n")) {
                    let line = Array(pending[..<end])
                    pending.removeSubrange(...end)
                    guard let object = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any] else { continue }
                    if let error = object["error"] as? [String: Any] {
                        throw EtcdError("etcd ended the watch: \(error["message"] ?? error)")
                    }
                    guard let result = object["result"] as? [String: Any] else { continue }
                    if result["canceled"] as? Bool == true || result["compact_revision"] != nil {
                        throw EtcdError("etcd cancelled the watch: \(result["cancel_reason"] ?? "compacted at \(result["compact_revision"] ?? "?")")")
                    }
                    let header = result["header"] as? [String: Any] ?? [:]
                    let batch: [Event] = (result["events"] as? [[String: Any]] ?? []).compactMap { event in
                        guard let kv = event["kv"] as? [String: Any] else { return nil }
                        if event["type"] as? String == "DELETE" {
                            return (kv["key"] as? String).flatMap(Self.text).map { .delete(key: $0) }
                        }
                        return Self.keyValue(kv).map { .put($0) }
                    }
                    events(batch, Self.number(header["revision"]) ?? 0)
                }
            }
        } catch let error as EtcdError {
            throw error
        } catch {
            throw EtcdError("the watch stream from etcd broke: \(error)")
        }
    }

    // MARK: - Transport

    private func call(_ path: String, _ body: [String: Any]) async throws(EtcdError) -> [String: Any] {
        let response = try await send(path, body, timeout: .seconds(5))
        let bytes: ByteBuffer
        do { bytes = try await response.body.collect(upTo: 16 << 20) } catch {
            throw EtcdError("etcd's answer to \(path) broke off: \(error)")
        }
        guard let object = try? JSONSerialization.jsonObject(with: Data(bytes.readableBytesView)) as? [String: Any] else {
            throw EtcdError("etcd's answer to \(path) is not JSON")
        }
        return object
    }

    /// Sends to the preferred member, then the others; authenticates once when etcd asks.
    private func send(_ path: String, _ body: [String: Any], timeout: TimeAmount) async throws(EtcdError) -> HTTPClientResponse {
        var lastError = EtcdError("no etcd endpoint")
        let first = state.withLock { $0.preferred }
        for offset in 0..<endpoints.count {
            let index = (first + offset) % endpoints.count
            for attempt in 0..<2 {
                do {
                    if credentials != nil, state.withLock({ $0.token }) == nil { try await authenticate(endpoint: index) }
                    let response = try await post(endpoints[index] + "/v3/" + path, body, token: state.withLock { $0.token }, timeout: timeout)
                    if response.status == .ok {
                        state.withLock { $0.preferred = index }
                        return response
                    }
                    let text = (try? await response.body.collect(upTo: 1 << 16)).map { String(buffer: $0) } ?? ""
                    let message = (try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])?["message"] as? String ?? text
                    // A token etcd no longer knows (expired, or minted by a restarted member): once more with a new one.
                    if credentials != nil, attempt == 0, message.contains("invalid auth token") || message.contains("user name is empty") {
                        state.withLock { $0.token = nil }
                        continue
                    }
                    // A member that is stopping, has no leader or timed out (408, 5xx): the
                    // next member may answer. Any other answer another member would repeat.
                    if response.status == .requestTimeout || response.status.code >= 500 {
                        lastError = EtcdError("etcd at \(endpoints[index]) could not serve \(path): \(message) (HTTP \(response.status.code))")
                        break
                    }
                    throw EtcdError("etcd refused \(path): \(message) (HTTP \(response.status.code))", kind: .refused)
                } catch let error as EtcdError where error.answered {
                    throw error
                } catch {
                    lastError = EtcdError("etcd at \(endpoints[index]) did not answer \(path): \(error)")
                    break
                }
            }
        }
        throw lastError
    }

    private func authenticate(endpoint index: Int) async throws {
        guard let credentials else { return }
        let response = try await post(endpoints[index] + "/v3/auth/authenticate", ["name": credentials.user, "password": credentials.password],
                                      token: nil, timeout: .seconds(5))
        let bytes = try await response.body.collect(upTo: 1 << 16)
        let object = try? JSONSerialization.jsonObject(with: Data(bytes.readableBytesView)) as? [String: Any]
        if response.status == .requestTimeout || response.status.code >= 500 {
            throw EtcdError("etcd at \(endpoints[index]) could not authenticate now: \(object?["message"] ?? String(buffer: bytes)) (HTTP \(response.status.code))")
        }
        guard response.status == .ok, let token = object?["token"] as? String else {
            throw EtcdError("etcd refused user '\(credentials.user)': \(object?["message"] ?? String(buffer: bytes)) (check fleet: user and password-file)", kind: .refused)
        }
        state.withLock { $0.token = token }
    }

    private func post(_ url: String, _ body: [String: Any], token: String?, timeout: TimeAmount) async throws -> HTTPClientResponse {
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        if let token { request.headers.add(name: "Authorization", value: token) }
        request.body = .bytes(ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: body)))
        return try await client.execute(request, timeout: timeout)
    }

    // MARK: - Encoding

    static func base64(_ text: String) -> String { Data(text.utf8).base64EncodedString() }

    static func text(_ base64: String) -> String? {
        Data(base64Encoded: base64).flatMap { String(data: $0, encoding: .utf8) }
    }

    /// The end of the range that holds every key starting with `prefix`: its last byte plus one.
    static func rangeEnd(_ prefix: String) -> String {
        var bytes = Array(prefix.utf8)
        bytes[bytes.count - 1] += 1
        return String(decoding: bytes, as: UTF8.self)
    }

    static func number(_ value: Any?) -> Int64? {
        switch value {
        case let text as String: Int64(text)
        case let number as NSNumber: number.int64Value
        default: nil
        }
    }

    static func keyValue(_ object: [String: Any]) -> KeyValue? {
        guard let key = (object["key"] as? String).flatMap(text) else { return nil }
        let value = (object["value"] as? String).flatMap { Data(base64Encoded: $0) }.map { Array($0) } ?? []
        return KeyValue(key: key, value: value, lease: number(object["lease"]) ?? 0)
    }
}

/// What went wrong talking to etcd, as a sentence for the log and `vpm stats`.
public struct EtcdError: Error, CustomStringConvertible, Sendable {
    /// Which condition it is: each has its own state in `vpm stats` and its own log line.
    public enum Kind: String, Sendable {
        /// No member answered (or one answered that it cannot serve now: 408, 5xx).
        case unreachable
        /// etcd answered and refused: the user, the password or a permission.
        case refused
        /// etcd answered, and another engine holds this engine's name.
        case nameTaken = "name-taken"
    }

    public var description: String
    public var kind: Kind
    /// etcd itself answered, as opposed to no member being reachable.
    public var answered: Bool { kind != .unreachable }

    init(_ description: String, kind: Kind = .unreachable) {
        self.description = description
        self.kind = kind
    }
}
