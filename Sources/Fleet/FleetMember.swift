public import Crypto
public import Foundation
public import Logging
public import Packet
public import Policy
import Synchronization

/// One engine's membership of a fleet (docs/fleet.md): publishes its engine entry and its
/// instances under a lease it keeps alive, and keeps a view of everyone's, read once and then
/// watched. When etcd cannot be reached the view stays as it was — established connections
/// and known peers carry on — and the member says so (`status`) and retries until etcd
/// answers again, then publishes afresh (its lease may have expired meanwhile).
public final class FleetMember: Sendable {
    public struct Status: Sendable, Equatable {
        public var connected = false
        /// Since when etcd has been unreachable (Unix seconds); nil while connected or before the first contact.
        public var lostSince: Int64?
        public var lastError: String?
        /// Why it is not connected: "unreachable", "refused" or "name-taken"; nil while connected.
        public var trouble: String?
        public var engines = 0
        public var instances = 0
        public var ignored = 0
        public var revision: Int64 = 0
    }

    public let settings: FleetSettings
    public let name: String
    private let layout: DirectoryLayout
    private let gateway: EtcdGateway
    private let logger: Logger
    private let state: Mutex<State>
    private struct State {
        var view = FleetView()
        var status = Status()
        var wanted: Set<InstanceEntry> = []
        /// Derived keys by own public key and peer public key.
        var keys: [String: Data] = [:]
        /// The engine's key, and after a rotation the one before (honoured for one lease).
        var key: FleetKey
        var previous: FleetKey?
        /// Until peers have seen the rotated entry, requests are still signed with `previous`.
        var signWithPrevious = false
        var rotations = 0
        /// The entry this engine publishes, and the lease it is published under (0: none yet).
        var own: EngineEntry
        var lease: Int64 = 0

        /// The key this engine signs its requests with now.
        var signingKey: FleetKey { signWithPrevious ? previous ?? key : key }
    }
    private let task = Mutex<Task<Void, Never>?>(nil)

    public init(settings: FleetSettings, name: String, key: FleetKey, own: EngineEntry, gateway: EtcdGateway, logger: Logger) {
        self.settings = settings
        self.name = name
        state = Mutex(State(key: key, own: own))
        self.gateway = gateway
        self.logger = logger
        layout = DirectoryLayout(prefix: settings.prefix)
    }

    public func start() {
        task.withLock { $0 = Task.detached { await self.run() } }
    }

    /// Stops keeping the lease alive and revokes it, so peers forget this engine at once
    /// rather than a lease later (best effort: a second at most).
    public func stop() {
        let running = task.withLock { task -> Task<Void, Never>? in defer { task = nil }; return task }
        running?.cancel()
        let done = DispatchSemaphore(value: 0)
        Task.detached {
            await running?.value
            // Leaving: peers forget this engine and its instances now rather than a lease
            // later. From this task, which nobody cancelled: the request made inside the
            // cancelled one ended before it was sent.
            let lease = self.state.withLock { state -> Int64 in defer { state.lease = 0 }; return state.lease }
            if lease != 0 { try? await self.gateway.revokeLease(lease) }
            await self.gateway.shutdown()
            done.signal()
        }
        _ = done.wait(timeout: .now() + 2)
    }

    public var status: Status { state.withLock { $0.status } }
    public var view: FleetView { state.withLock { $0.view } }

    /// The instances this engine serves now; published (and withdrawn) as they change.
    public func setInstances(_ instances: Set<InstanceEntry>) {
        state.withLock { $0.wanted = instances }
    }

    /// The engine at `address` and the negotiation key this engine shares with it, from the
    /// last view; nil when no live engine of the fleet publishes that address.
    public func peer(at address: IPAddress) -> (name: String, port: UInt16, key: SymmetricKey)? {
        let ownName = name
        let found = state.withLock { state -> (EngineEntry, FleetKey)? in
            guard let engine = state.view.engine(at: address), engine.name != ownName else { return nil }
            return (engine, state.signingKey)
        }
        guard let (engine, own) = found, let key = derived(own, engine.publicKey) else { return nil }
        return (engine.name, engine.port, key)
    }

    /// Every key a request from the engine at `address` may be signed with: ours and its,
    /// each current or, for a lease after a rotation, previous. Empty: no live engine there.
    public func acceptedKeys(at address: IPAddress) -> [SymmetricKey] {
        let ownName = name
        guard let (engine, own) = state.withLock({ state -> (EngineEntry, [FleetKey])? in
            guard let engine = state.view.engine(at: address), engine.name != ownName else { return nil }
            return (engine, [state.key] + (state.previous.map { [$0] } ?? []))
        }) else { return [] }
        let theirs = [engine.publicKey] + (engine.previousPublicKey.map { [$0] } ?? [])
        return own.flatMap { key in theirs.compactMap { derived(key, $0) } }
    }

    /// The key `own` shares with the engine whose public key is `peer`, derived once.
    private func derived(_ own: FleetKey, _ peer: String) -> SymmetricKey? {
        let cacheKey = own.publicKeyText + peer
        if let cached = state.withLock({ $0.keys[cacheKey] }) { return SymmetricKey(data: cached) }
        guard let key = own.negotiationKey(peer: peer) else { return nil }
        let bytes = key.withUnsafeBytes { Data($0) }
        state.withLock { $0.keys[cacheKey] = bytes }
        return key
    }

    /// A new key pair for this engine: written to `key-file`, published at once with the
    /// previous public key beside it. Requests are signed with the previous key until the
    /// new entry has had time to reach the peers (2 s), and requests signed with it are
    /// honoured for one lease; then the previous key is withdrawn. Returns the new public key.
    public func rotateKey() throws(FleetKeyError) -> String {
        let fresh = FleetKey()
        try fresh.write(to: settings.keyFile)
        let rotation = state.withLock { state -> Int in
            state.previous = state.key
            state.key = fresh
            state.signWithPrevious = true
            state.own.publicKey = fresh.publicKeyText
            state.own.previousPublicKey = state.previous?.publicKeyText
            state.rotations += 1
            return state.rotations
        }
        logger.notice("fleet: key rotated; the previous key is honoured for one lease",
                      metadata: ["public-key": "\(fresh.publicKeyText)", "lease": "\(settings.leaseSeconds)s"])
        // Published now; signed with once the peers have had time to see it.
        Task.detached {
            guard await self.publishOwn() else { return }
            try? await Task.sleep(for: .seconds(2))
            self.state.withLock { if $0.rotations == rotation { $0.signWithPrevious = false } }
        }
        // A lease after the rotation, published or not, the previous key is forgotten.
        Task.detached {
            try? await Task.sleep(for: .seconds(self.settings.leaseSeconds))
            let withdrawn = self.state.withLock { state -> Bool in
                guard state.rotations == rotation else { return false }
                state.previous = nil
                state.signWithPrevious = false
                state.own.previousPublicKey = nil
                return true
            }
            // Until etcd has it: peers honour what the entry lists, so a previous key left
            // there would keep working (a later rotation publishes its own entry instead).
            guard withdrawn else { return }
            while !(await self.publishOwn()), self.state.withLock({ $0.rotations == rotation }), !Task.isCancelled {
                try? await Task.sleep(for: .seconds(1))
            }
        }
        return fresh.publicKeyText
    }

    /// Puts this engine's entry under its lease now (when it has one; otherwise the next
    /// session publishes it).
    @discardableResult
    private func publishOwn() async -> Bool {
        let (entry, lease) = state.withLock { ($0.own, $0.lease) }
        guard lease != 0, let value = try? JSONEncoder().encode(entry) else { return false }
        do { try await gateway.put(layout.engine(name), value: Array(value), lease: lease) } catch { return false }
        return true
    }

    /// Every address the other live engines publish (the hosts a service address may lead to).
    public var peerAddresses: [IPAddress] {
        let ownName = name
        return state.withLock { state in
            state.view.engines.values.filter { $0.name != ownName }.flatMap { $0.addresses.compactMap(IPAddress.init) }
        }
    }

    /// The other live engines with an instance of `aid` on `port`/`transport`, each with its
    /// first address of the family asked for and the key shared with it, by name (the last
    /// view: while etcd is unreachable, the engines known before).
    public func engines(serving aid: String, port: UInt16, transport: String, ipv4: Bool) -> [Host] {
        let ownName = name
        let (found, own) = state.withLock { state in
            let found = state.view.engines(serving: aid, port: port, transport: transport).compactMap { engine -> (EngineEntry, IPAddress)? in
                // An address two engines publish is neither's (`FleetView.engine(at:)`).
                guard engine.name != ownName,
                      let address = engine.addresses.lazy.compactMap(IPAddress.init).first(where: { $0.isIPv4 == ipv4 }),
                      state.view.engine(at: address)?.name == engine.name else { return nil }
                return (engine, address)
            }
            return (found, state.signingKey)
        }
        return found.compactMap { engine, address in
            derived(own, engine.publicKey).map { key in
                Host(name: engine.name, address: address, port: engine.port, key: key.withUnsafeBytes { Data($0) })
            }
        }
    }

    /// A host of the fleet a connection may go to, and the key shared with its engine.
    public struct Host: Sendable {
        public var name: String
        public var address: IPAddress
        public var port: UInt16
        /// The negotiation key's bytes (SymmetricKey is not Sendable here).
        public var key: Data
    }

    // MARK: - The loop

    private func run() async {
        var backoff = 1
        var lease: Int64 = 0
        while !Task.isCancelled {
            do {
                // A live entry under our name with another key is another host's: two
                // engines overwriting each other's entry would each lose their peers.
                let own = state.withLock { $0.own }
                if let existing = try await gateway.get(layout.engine(name)),
                   let entry = try? JSONDecoder().decode(EngineEntry.self, from: Data(existing.value)),
                   entry.publicKey != own.publicKey, entry.publicKey != own.previousPublicKey {
                    throw EtcdError("another engine (at \(entry.addresses.joined(separator: " "))) holds the name '\(name)' in the fleet: "
                                    + "give each host its own fleet: name; this engine retries until the name is free", kind: .nameTaken)
                }
                lease = try await gateway.grantLease(seconds: settings.leaseSeconds)
                try await gateway.put(layout.engine(name), value: Array(try JSONEncoder().encode(own)), lease: lease)
                // A key rotated meanwhile changed the entry: publish that one.
                let latest = state.withLock { state -> EngineEntry in
                    state.lease = lease
                    return state.own
                }
                if latest != own {
                    try await gateway.put(layout.engine(name), value: Array(try JSONEncoder().encode(latest)), lease: lease)
                }
                try await readView()
                connected()
                backoff = 1
                let current = lease
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { try await self.keepAlive(lease: current) }
                    group.addTask { try await self.watch() }
                    group.addTask { try await self.publishInstances(lease: current) }
                    try await group.next()
                    group.cancelAll()
                }
            } catch is CancellationError {
                break
            } catch {
                lost("\(error)", kind: (error as? EtcdError)?.kind ?? .unreachable)
            }
            if Task.isCancelled { break }
            try? await Task.sleep(for: .seconds(backoff))
            backoff = min(backoff * 2, 5)
        }
    }

    private func keepAlive(lease: Int64) async throws {
        let interval = max(1, settings.leaseSeconds / 3)
        while !Task.isCancelled {
            try await Task.sleep(for: .seconds(interval))
            let remaining = try await gateway.keepAlive(lease: lease)
            guard remaining > 0 else { throw EtcdError("etcd forgot this engine's lease (etcd was out of reach longer than the lease): publishing again") }
            connected()
        }
        throw CancellationError()
    }

    /// Reads the whole directory, then follows it; reads it again whenever the watch ends.
    private func watch() async throws {
        while !Task.isCancelled {
            let revision = state.withLock { $0.view.revision }
            do {
                try await gateway.watch(prefix: layout.root, from: revision + 1) { events, revision in
                    self.update { view, accept in
                        for event in events {
                            switch event {
                            case .put(let entry): view.apply(key: entry.key, value: entry.value, layout: self.layout, accept: accept)
                            case .delete(let key): view.apply(key: key, value: nil, layout: self.layout, accept: accept)
                            }
                        }
                        view.revision = max(view.revision, revision)
                    }
                }
            } catch {
                guard !error.answered else { throw error }
                // Stopping: not a broken watch.
                try Task.checkCancellation()
                // The member went away: read everything again from the next one.
                logger.notice("fleet: the etcd watch broke; reading the directory again", metadata: ["reason": "\(error)"])
            }
            try Task.checkCancellation()
            try await Task.sleep(for: .milliseconds(200))
            try await readView()
            connected()
        }
        throw CancellationError()
    }

    private func readView() async throws {
        let (revision, entries) = try await gateway.range(prefix: layout.root)
        update { view, accept in
            var fresh = FleetView()
            for entry in entries { fresh.apply(key: entry.key, value: entry.value, layout: layout, accept: accept) }
            fresh.revision = revision
            view = fresh
        }
    }

    /// Puts what is wanted and not published, deletes what is published and no longer wanted.
    private func publishInstances(lease: Int64) async throws {
        var published: Set<InstanceEntry> = []
        while !Task.isCancelled {
            let wanted = state.withLock { $0.wanted }
            for entry in wanted.subtracting(published).sorted() {
                try await gateway.put(layout.instance(entry), value: Array(try JSONEncoder().encode(entry)), lease: lease)
                published.insert(entry)
            }
            for entry in published.subtracting(wanted).sorted() {
                try await gateway.delete(layout.instance(entry))
                published.remove(entry)
            }
            // The registry is looked at every 100 ms; a change is published within 200.
            try await Task.sleep(for: .milliseconds(200))
        }
        throw CancellationError()
    }

    // MARK: - State

    /// Changes the view; logs engines that come and go and entries left out.
    private func update(_ change: (inout FleetView, (EngineEntry) -> String?) -> Void) {
        let network = settings.network, range = settings.virtualPorts, ownName = name
        let accept: (EngineEntry) -> String? = { engine in
            if engine.name == ownName { return nil }
            guard let ports = engine.virtualPortRange, range.contains(ports.lowerBound), range.contains(ports.upperBound) else {
                return "its virtual ports \(engine.virtualPorts) are outside the fleet's \(range.lowerBound)-\(range.upperBound)"
            }
            let addresses = engine.addresses.compactMap(IPAddress.init)
            guard !addresses.isEmpty, addresses.count == engine.addresses.count, addresses.allSatisfy(network.containsAddress) else {
                return "its addresses \(engine.addresses.joined(separator: " ")) are not all in the fleet's network \(network)"
            }
            return nil
        }
        let (before, after) = state.withLock { state -> (FleetView, FleetView) in
            let before = state.view
            change(&state.view, accept)
            state.status.engines = state.view.engines.count
            state.status.instances = state.view.instances.count
            state.status.ignored = state.view.ignored.count
            state.status.revision = state.view.revision
            return (before, state.view)
        }
        let known = Set(before.engines.values.map(\.name)), now = Set(after.engines.values.map(\.name))
        for engine in now.subtracting(known).sorted() where engine != name {
            logger.notice("fleet: engine joined", metadata: ["engine": "\(engine)"])
        }
        for engine in known.subtracting(now).sorted() where engine != name {
            logger.notice("fleet: engine left", metadata: ["engine": "\(engine)"])
        }
        for (key, reason) in after.ignored where before.ignored[key] != reason {
            logger.warning("fleet: entry ignored", metadata: ["key": "\(key)", "reason": "\(reason)"])
        }
        let conflicts = after.conflicts, earlier = before.conflicts
        for (address, names) in conflicts.sorted(by: { $0.key < $1.key }) where earlier[address] != names {
            logger.warning("fleet: engines claim one address; neither is used for it until one withdraws it",
                           metadata: ["address": "\(address)", "engines": "\(names.joined(separator: ","))"])
        }
    }

    private func connected() {
        let (wasConnected, lostSince, engines) = state.withLock { state -> (Bool, Int64?, Int) in
            defer {
                state.status.connected = true
                state.status.lostSince = nil
                state.status.lastError = nil
                state.status.trouble = nil
            }
            return (state.status.connected, state.status.lostSince, state.status.engines)
        }
        guard !wasConnected else { return }
        if let since = lostSince {
            logger.notice("fleet: etcd reachable again; directory read afresh",
                          metadata: ["unreachable-for": "\(Int64(Date().timeIntervalSince1970) - since)s"])
        } else {
            logger.info("fleet: joined", metadata: ["name": "\(name)", "engines": "\(engines)"])
        }
    }

    private func lost(_ reason: String, kind: EtcdError.Kind) {
        let changed = state.withLock { state -> Bool in
            defer {
                state.status.lastError = reason
                if state.status.lostSince == nil { state.status.lostSince = Int64(Date().timeIntervalSince1970) }
                state.status.connected = false
                state.status.trouble = kind.rawValue
            }
            return state.status.lostSince == nil || state.status.trouble != kind.rawValue
        }
        guard changed else { return }
        switch kind {
        case .unreachable:
            logger.error("fleet: etcd unreachable; keeping the last view of the fleet and retrying", metadata: ["reason": "\(reason)"])
        case .refused:
            logger.error("fleet: etcd refused this engine; keeping the last view of the fleet and retrying", metadata: ["reason": "\(reason)"])
        case .nameTaken:
            logger.error("fleet: another engine holds this engine's name; keeping the last view of the fleet and retrying", metadata: ["reason": "\(reason)"])
        }
    }

}
