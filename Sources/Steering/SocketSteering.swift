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
    }

    public static let pinRoot = "/sys/fs/bpf/vpm"
    public static let socketMapSize: UInt32 = 1 << 18

    /// Where this namespace's pins live.
    public let pinDirectory: String
    /// True when the maps were an earlier engine's (steering ran on meanwhile).
    public let tookOver: Bool
    private let descriptors: vpm_steer_descriptors

    /// Loads the program and attaches it to the calling thread's network namespace, taking
    /// over an earlier engine's pins where it finds them. Mounts bpffs on /sys/fs/bpf first
    /// when nothing is mounted there (systemd mounts it; a bare namespace may not have it).
    public init() throws {
        let namespace = try Self.networkNamespaceInode()
        try Self.prepareRoot()
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
        var out = vpm_steer_descriptors()
        var message = [CChar](repeating: 0, count: 256)
        let result = vpm_steer_attach(pinDirectory, netns, &out, &message, message.count)
        guard result == 0 else { throw Failure(String(cString: message)) }
        // The pin holds the link: the engine keeps no descriptor of it, so removing the pin
        // (`detach`) detaches the program, and an engine that dies leaves it attached.
        close(out.link)
        out.link = -1
        descriptors = out
        tookOver = out.took_over != 0
    }

    deinit {
        for descriptor in [descriptors.rules, descriptors.ports, descriptors.sockets, descriptors.counters] {
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

    // MARK: Lifetime

    /// Detaches the program and removes the pins: connections already accepted go on (they
    /// never depended on it); new ones to the managed ports meet the kernel's own lookup.
    public func detach() {
        for name in ["link", "vpm_rules", "vpm_ports", "vpm_sockets", "vpm_counters"] {
            unlink("\(pinDirectory)/\(name)")
        }
        rmdir(pinDirectory)
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
        for name in ["link", "vpm_rules", "vpm_ports", "vpm_sockets", "vpm_counters"] { unlink("\(directory)/\(name)") }
        rmdir(directory)
    }

    static func networkNamespaceInode() throws -> UInt64 {
        var status = stat()
        guard stat("/proc/thread-self/ns/net", &status) == 0 else {
            throw Failure("cannot read /proc/thread-self/ns/net: \(String(cString: strerror(errno)))")
        }
        return UInt64(status.st_ino)
    }

    /// /sys/fs/bpf as a bpf filesystem (mounted when absent) and /sys/fs/bpf/vpm in it.
    static func prepareRoot() throws {
        let mountPoint = "/sys/fs/bpf"
        if vpm_steer_is_bpffs(mountPoint) != 1 {
            let result = vpm_steer_mount_bpffs(mountPoint)
            guard result == 0 else {
                throw Failure("no bpf filesystem on \(mountPoint), and mounting one failed: \(String(cString: strerror(-result))) (mount it: `mount -t bpf bpf \(mountPoint)`)")
            }
        }
        if mkdir(pinRoot, 0o700) != 0 && errno != EEXIST {
            throw Failure("cannot make \(pinRoot): \(String(cString: strerror(errno)))")
        }
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
