internal import CSteering
#if canImport(Glibc)
import Glibc
#endif
public import Packet

/// The socket datapath's BPF side (docs/datapaths.md): the sk_lookup program attached to this
/// network namespace, and its maps, pinned in bpffs under `/sys/fs/bpf/vpm/NETNS-INODE` so
/// that steering survives the engine: a restarted engine takes the pins over (`attach`).
/// Every `bpf()` call of vpm goes through here and the CSteering C target.
public final class SocketSteering: @unchecked Sendable {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
        init(_ description: String) { self.description = description }
    }

    /// What the program counted since its maps were made (summed over CPUs).
    public struct Counters: Equatable, Sendable {
        public var steered: UInt64 = 0
        public var refusedNoRule: UInt64 = 0
        public var refusedNoSocket: UInt64 = 0
        public var refusedAddress: UInt64 = 0

        public init(steered: UInt64 = 0, refusedNoRule: UInt64 = 0, refusedNoSocket: UInt64 = 0, refusedAddress: UInt64 = 0) {
            self.steered = steered
            self.refusedNoRule = refusedNoRule
            self.refusedNoSocket = refusedNoSocket
            self.refusedAddress = refusedAddress
        }
    }

    /// Where the namespaces' pin folders live.
    public static let pinRoot = "/sys/fs/bpf/vpm"
    /// What a namespace's pin folder holds: the two links and the maps.
    static let pinNames = ["link", "observe", "vpm_rules", "vpm_ports", "vpm_sockets", "vpm_counters", "vpm_closed", "vpm_config", "vpm_last_refused", "vpm_instances"]
    public static let socketMapSize: UInt32 = 1 << 18

    /// Where this namespace's pins live.
    public let pinDirectory: String
    /// True when the maps were an earlier engine's (steering ran on meanwhile).
    public let tookOver: Bool
    /// True when no bpf filesystem was mounted on /sys/fs/bpf and this mounted one.
    public let mountedFilesystem: Bool
    private let descriptors: vpm_steer_descriptors

    /// Loads the program and attaches it to the calling thread's network namespace, taking
    /// over an earlier engine's pins where it finds them. Mounts bpffs on /sys/fs/bpf first
    /// when nothing is mounted there (systemd mounts it; a bare namespace may not have it).
    public init() throws {
        let namespace = try Self.networkNamespaceInode()
        mountedFilesystem = try Self.prepareRoot()
        Self.sweepStale()
        pinDirectory = "\(Self.pinRoot)/\(namespace)"
        if mkdir(pinDirectory, 0o700) != 0 && errno != EEXIST {
            throw Failure("cannot make \(pinDirectory): \(String(cString: strerror(errno)))")
        }
        // Pins of a namespace that is gone, whose inode this one now has: not ours to take over.
        Self.removeIfStale(pinDirectory)
        _ = mkdir(pinDirectory, 0o700)
        let netns = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)
        guard netns >= 0 else { throw Failure("cannot open /proc/thread-self/ns/net: \(String(cString: strerror(errno)))") }
        defer { close(netns) }
        // The observer attaches to the cgroup2 hierarchy's root. Where this process sees none
        // (`ip netns exec` gives it a /sys of its own), a mount of its own for the attach.
        var privateCgroup: String?
        if Self.cgroup2Root() == nil {
            let directory = "/run/vpm-cgroup2-\(getpid())"
            _ = mkdir(directory, 0o700)
            guard mount("none", directory, "cgroup2", 0, nil) == 0 else {
                let reason = String(cString: strerror(errno))
                rmdir(directory)
                throw Failure("no cgroup2 hierarchy is mounted (the flow observer attaches there), and mounting one failed: \(reason)")
            }
            privateCgroup = directory
        }
        defer {
            if let privateCgroup {
                umount2(privateCgroup, Int32(MNT_DETACH))
                rmdir(privateCgroup)
            }
        }
        guard let cgroup = privateCgroup ?? Self.cgroup2Root() else { throw Failure("no cgroup2 hierarchy") }
        var out = vpm_steer_descriptors()
        var message = [CChar](repeating: 0, count: 256)
        let result = vpm_steer_attach(pinDirectory, netns, cgroup, &out, &message, message.count)
        guard result == 0 else { throw Failure(String(cString: message)) }
        // The observer sees every socket of the host: it records only this namespace's.
        let probe = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var cookie: UInt64 = 0
        var length = socklen_t(MemoryLayout<UInt64>.size)
        let named = probe >= 0 && getsockopt(probe, SOL_SOCKET, 71 /* SO_NETNS_COOKIE */, &cookie, &length) == 0
        if probe >= 0 { close(probe) }
        var zero: UInt32 = 0
        guard named, bpf_map_update_elem(out.config, &zero, &cookie, UInt64(BPF_ANY)) == 0 else {
            for descriptor in [out.rules, out.ports, out.sockets, out.counters, out.closed, out.config, out.last_refused, out.instances, out.link] { close(descriptor) }
            throw Failure("cannot give the flow observer this network namespace's cookie: \(String(cString: strerror(errno)))")
        }
        // The pin holds the link: the engine keeps no descriptor of it, so removing the pin
        // (`detach`) detaches the program, and an engine that dies leaves it attached.
        close(out.link)
        out.link = -1
        descriptors = out
        tookOver = out.took_over != 0
    }

    deinit {
        for descriptor in [descriptors.rules, descriptors.ports, descriptors.sockets, descriptors.counters, descriptors.closed, descriptors.config,
                           descriptors.last_refused, descriptors.instances] {
            close(descriptor)
        }
    }

    // MARK: Ports

    /// Makes the managed ports exactly `ports` (transport, initial port): connections from
    /// other hosts to them are steered or refused; other ports are left to the kernel.
    public func setPorts(_ ports: Set<PortKey>) throws {
        var present = Set<PortKey>()
        try forEachKey(descriptors.ports, size: 4) { key in
            let port = PortKey(transport: TransportProtocol(rawValue: key[0]) ?? .tcp, port: UInt16(key[2]) << 8 | UInt16(key[3]))
            present.insert(port)
        }
        for port in ports.subtracting(present) {
            var one: UInt32 = 1
            try update(descriptors.ports, key: port.bytes, value: &one, "add managed port \(port.port)")
        }
        for port in present.subtracting(ports) { try delete(descriptors.ports, key: port.bytes, "remove managed port \(port.port)") }
    }

    public struct PortKey: Hashable, Sendable {
        public var transport: TransportProtocol
        public var port: UInt16
        public init(transport: TransportProtocol, port: UInt16) {
            self.transport = transport
            self.port = port
        }
        var bytes: [UInt8] { [transport.rawValue, 0, UInt8(port >> 8), UInt8(port & 0xFF)] }
    }

    // MARK: Instances

    /// Makes the instances' map exactly `instances`: virtual port → (slot, whether its
    /// sockets must carry the engine's mark). The observer puts a socket that starts listening
    /// on one of these ports in its slot at once (sockops' listen callback).
    public func setInstances(_ instances: [PortKey: (slot: UInt32, marked: Bool)]) throws {
        var present: [PortKey: [UInt8]] = [:]
        var keys: [[UInt8]] = []
        try forEachKey(descriptors.instances, size: 4) { keys.append($0) }
        for key in keys {
            var value = [UInt8](repeating: 0, count: 8)
            guard bpf_map_lookup_elem(descriptors.instances, key, &value) == 0 else { continue }
            present[PortKey(transport: TransportProtocol(rawValue: key[0]) ?? .tcp, port: UInt16(key[2]) << 8 | UInt16(key[3]))] = value
        }
        for (port, instance) in instances {
            var value = [UInt8](repeating: 0, count: 8)
            withUnsafeBytes(of: instance.slot.littleEndian) { value.replaceSubrange(0..<4, with: $0) }
            value[4] = instance.marked ? 1 : 0
            guard present[port] != value else { continue }
            guard port.bytes.withUnsafeBytes({ key in value.withUnsafeBytes { bpf_map_update_elem(descriptors.instances, key.baseAddress, $0.baseAddress, UInt64(BPF_ANY)) } }) == 0 else {
                throw Failure("cannot write an instance's port in the steering maps: \(String(cString: strerror(errno)))")
            }
        }
        for port in present.keys where instances[port] == nil {
            try delete(descriptors.instances, key: port.bytes, "remove an instance's port")
        }
    }

    // MARK: Rules

    /// The rules the trie holds now.
    public func rules() throws -> Set<SteeringRule> {
        var rules = Set<SteeringRule>()
        var keys: [[UInt8]] = []
        try forEachKey(descriptors.rules, size: SteeringRule.keySize) { keys.append($0) }
        for key in keys {
            var slot: UInt32 = 0
            guard bpf_map_lookup_elem(descriptors.rules, key, &slot) == 0 else { continue }
            if let rule = SteeringRule(key: key, slot: slot) { rules.insert(rule) }
        }
        return rules
    }

    /// Makes the trie hold exactly `wanted`, from `installed` (what it holds). New and changed
    /// elements first, then the ones to go: a client never meets a moment without its rule.
    public func replaceRules(_ installed: Set<SteeringRule>, with wanted: Set<SteeringRule>) throws {
        for rule in wanted.subtracting(installed) {
            var slot = rule.slot
            try update(descriptors.rules, key: rule.key, value: &slot, "add a source rule")
        }
        let wantedKeys = Set(wanted.map(\.key))
        for rule in installed.subtracting(wanted) where !wantedKeys.contains(rule.key) {
            try delete(descriptors.rules, key: rule.key, "remove a source rule")
        }
    }

    // MARK: Sockets

    /// Puts the socket `descriptor` (a listening TCP socket or a bound UDP socket) in `slot`,
    /// replacing what was there. The map holds the socket, not the descriptor: the caller
    /// closes its copy, and the entry leaves the map when the socket closes.
    public func setSocket(_ descriptor: Int32, slot: UInt32) throws {
        var key = slot
        var value = UInt64(descriptor)
        guard bpf_map_update_elem(descriptors.sockets, &key, &value, UInt64(BPF_ANY)) == 0 else {
            throw Failure("cannot put a socket in the socket map: \(String(cString: strerror(errno)))")
        }
    }

    /// The cookie of the socket in `slot`, or nil when it is empty.
    public func socketCookie(slot: UInt32) -> UInt64? {
        var key = slot
        var cookie: UInt64 = 0
        return bpf_map_lookup_elem(descriptors.sockets, &key, &cookie) == 0 ? cookie : nil
    }

    public func clearSocket(slot: UInt32) {
        var key = slot
        _ = bpf_map_delete_elem(descriptors.sockets, &key)
    }

    /// The cookie the kernel gives a socket (SO_COOKIE), as the socket map reports it.
    public static func cookie(of descriptor: Int32) -> UInt64? {
        var cookie: UInt64 = 0
        var length = socklen_t(MemoryLayout<UInt64>.size)
        return getsockopt(descriptor, SOL_SOCKET, 57 /* SO_COOKIE */, &cookie, &length) == 0 ? cookie : nil
    }

    // MARK: Closed connections

    /// A steered connection that ended, as the observer recorded it at its close.
    public struct ClosedConnection: Equatable, Sendable {
        public var client: IPAddress
        public var clientPort: UInt16
        public var server: IPAddress
        public var initialPort: UInt16
        public var bytesToServer: UInt64
        public var bytesToClient: UInt64
        public var segmentsToServer: UInt32
        public var segmentsToClient: UInt32
        /// CLOCK_MONOTONIC nanoseconds of the close.
        public var closedAt: UInt64
    }

    /// The connections that closed since the last call; read and removed from the map.
    public func takeClosedConnections() -> [ClosedConnection] {
        var keys: [[UInt8]] = []
        try? forEachKey(descriptors.closed, size: 40) { keys.append($0) }
        var closed: [ClosedConnection] = []
        var value = [UInt8](repeating: 0, count: 32)
        for key in keys {
            guard bpf_map_lookup_elem(descriptors.closed, key, &value) == 0 else { continue }
            _ = bpf_map_delete_elem(descriptors.closed, key)
            func word(_ bytes: [UInt8], _ at: Int, _ count: Int) -> UInt64 {
                (0..<count).reduce(UInt64(0)) { $0 | UInt64(bytes[at + $1]) << (8 * UInt64($1)) }  // little-endian
            }
            func address(_ at: Int) -> IPAddress { IPAddress(bytes: key[at..<at + 16])! }
            closed.append(ClosedConnection(
                client: address(8), clientPort: UInt16(key[2]) << 8 | UInt16(key[3]),
                server: address(24), initialPort: UInt16(key[4]) << 8 | UInt16(key[5]),
                bytesToServer: word(value, 0, 8), bytesToClient: word(value, 8, 8),
                segmentsToServer: UInt32(word(value, 24, 4)), segmentsToClient: UInt32(word(value, 28, 4)),
                closedAt: word(value, 16, 8)))
        }
        return closed
    }

    // MARK: Counters

    public func counters() -> Counters {
        let cpus = Int(max(1, vpm_steer_possible_cpus()))
        var values = [UInt64](repeating: 0, count: cpus)
        func sum(_ index: UInt32) -> UInt64 {
            var key = index
            guard bpf_map_lookup_elem(descriptors.counters, &key, &values) == 0 else { return 0 }
            return values.reduce(0, &+)
        }
        return Counters(steered: sum(0), refusedNoRule: sum(1), refusedNoSocket: sum(2), refusedAddress: sum(3))
    }

    /// The last connection the program refused: client, client port, initial port, and
    /// whether it was for want of a rule (no AID) rather than of a socket (no instance).
    public func lastRefusal() -> (client: IPAddress, clientPort: UInt16, port: UInt16, noRule: Bool)? {
        var key: UInt32 = 0
        var value = [UInt8](repeating: 0, count: 24)
        guard bpf_map_lookup_elem(descriptors.last_refused, &key, &value) == 0 else { return nil }
        let reason = UInt32(value[20]) | UInt32(value[21]) << 8 | UInt32(value[22]) << 16 | UInt32(value[23]) << 24
        return (IPAddress(bytes: value[0..<16])!, UInt16(value[16]) << 8 | UInt16(value[17]), UInt16(value[18]) << 8 | UInt16(value[19]), reason == 1)
    }

    // MARK: Lifetime

    /// Detaches the program and removes the pins: connections already accepted go on (they
    /// never depended on it); new ones to the managed ports meet the kernel's own lookup.
    public func detach() { Self.removePins(in: pinDirectory) }

    /// Detaches the program of the calling thread's namespace and removes its pins, if any
    /// (`vpm rules remove`, a stop).
    public static func removePins() {
        guard let namespace = try? networkNamespaceInode() else { return }
        removePins(in: "\(pinRoot)/\(namespace)")
    }

    /// Unpins everything a namespace's folder holds (the last reference to the links: their
    /// programs detach) and removes the folder.
    private static func removePins(in directory: String) {
        for name in pinNames { unlink("\(directory)/\(name)") }
        rmdir(directory)
    }

    /// The first cgroup2 hierarchy this process sees (/sys/fs/cgroup under systemd,
    /// /sys/fs/cgroup/unified in hybrid mode).
    static func cgroup2Root() -> String? { cgroup2Root(mounts: "/proc/self/mounts") }

    private static func cgroup2Root(mounts: String) -> String? {
        guard let file = fopen(mounts, "r") else { return nil }
        defer { fclose(file) }
        var line: UnsafeMutablePointer<CChar>? = nil
        var capacity = 0
        defer { free(line) }
        while getline(&line, &capacity, file) > 0, let line {
            let fields = String(cString: line).split(separator: " ")
            if fields.count > 2, fields[2] == "cgroup2" { return String(fields[1]) }
        }
        return nil
    }

    /// Why this kernel cannot run the program (it loads it, attaches nothing), or nil.
    public static func unavailableReason() -> String? {
        var message = [CChar](repeating: 0, count: 256)
        return vpm_steer_probe(&message, message.count) == 0 ? nil : String(cString: message)
    }

    /// The pins of every namespace whose link is gone (the namespace was deleted), removed.
    public static func sweepStale() {
        guard let directory = opendir(pinRoot) else { return }
        var names: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
            if name.first?.isNumber == true { names.append(name) }
        }
        closedir(directory)
        for name in names { removeIfStale("\(pinRoot)/\(name)") }
    }

    /// Removes `directory`'s pins when its link is attached to no namespace, or to another
    /// than the one its name says.
    static func removeIfStale(_ directory: String) {
        let link = bpf_obj_get("\(directory)/link")
        var stale = true
        if link >= 0 {
            let namespace = vpm_steer_link_netns(link)
            close(link)
            stale = namespace <= 0 || "\(namespace)" != directory.split(separator: "/").last.map(String.init)
        }
        guard stale else { return }
        removePins(in: directory)
    }

    static func networkNamespaceInode() throws -> UInt64 {
        var status = stat()
        guard stat("/proc/thread-self/ns/net", &status) == 0 else {
            throw Failure("cannot read /proc/thread-self/ns/net: \(String(cString: strerror(errno)))")
        }
        return UInt64(status.st_ino)
    }

    /// A bpf filesystem on /sys/fs/bpf (mounted, as systemd does at boot, when there is
    /// none) and /sys/fs/bpf/vpm in it. Returns whether it mounted one: in a mount namespace of
    /// its own (`ip netns exec` gives a program its own /sys), the pins end with the engine.
    @discardableResult
    static func prepareRoot() throws -> Bool {
        var mounted = false
        if vpm_steer_is_bpffs("/sys/fs/bpf") != 1 {
            let result = vpm_steer_mount_bpffs("/sys/fs/bpf")
            guard result == 0 else {
                throw Failure("no bpf filesystem on /sys/fs/bpf, and mounting one failed: \(String(cString: strerror(-result))) (mount it: `mount -t bpf bpf /sys/fs/bpf`)")
            }
            mounted = true
        }
        if mkdir(pinRoot, 0o700) != 0 && errno != EEXIST {
            throw Failure("cannot make \(pinRoot): \(String(cString: strerror(errno)))")
        }
        return mounted
    }

    // MARK: Map access

    private func forEachKey(_ map: Int32, size: Int, _ body: ([UInt8]) throws -> Void) throws {
        var previous: [UInt8]? = nil
        var next = [UInt8](repeating: 0, count: size)
        while true {
            let result: Int32 = if var key = previous { bpf_map_get_next_key(map, &key, &next) } else { bpf_map_get_next_key(map, nil, &next) }
            if result != 0 {
                if errno == ENOENT { return }
                throw Failure("cannot read a BPF map: \(String(cString: strerror(errno)))")
            }
            try body(next)
            previous = next
        }
    }

    private func update(_ map: Int32, key: [UInt8], value: UnsafeMutableRawPointer, _ what: String) throws {
        guard key.withUnsafeBytes({ bpf_map_update_elem(map, $0.baseAddress, value, UInt64(BPF_ANY)) }) == 0 else {
            throw Failure("cannot \(what) in the steering maps: \(String(cString: strerror(errno)))")
        }
    }

    private func update(_ map: Int32, key: [UInt8], value: inout UInt32, _ what: String) throws {
        try withUnsafeMutablePointer(to: &value) { try update(map, key: key, value: UnsafeMutableRawPointer($0), what) }
    }

    private func delete(_ map: Int32, key: [UInt8], _ what: String) throws {
        guard key.withUnsafeBytes({ bpf_map_delete_elem(map, $0.baseAddress) }) == 0 || errno == ENOENT else {
            throw Failure("cannot \(what) in the steering maps: \(String(cString: strerror(errno)))")
        }
    }
}
