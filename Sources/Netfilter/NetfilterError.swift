public import SystemPackage

/// A failed netfilter call: which call, on which queue (or on conntrack), and the kernel's
/// errno, rendered as a sentence that tells the operator what to do next.
public struct NetfilterError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Call: String, Sendable {
        case openSocket = "mnl_socket_open"
        case bindSocket = "mnl_socket_bind"
        case setReceiveBuffer = "setsockopt(SO_RCVBUF)"
        case bindQueue = "bind queue"
        case configureQueue = "configure queue"
        case receive = "recv"
        case sendVerdict = "send verdict"
        case poll = "poll"
        case wakeup = "eventfd"
        // ctnetlink (`Conntrack`): `queue` is unused (0) for these.
        case openConntrack = "mnl_socket_open/bind(NETLINK_NETFILTER) for conntrack"
        case joinConntrackEvents = "setsockopt(NETLINK_ADD_MEMBERSHIP) for conntrack events"
        case dumpConntrack = "conntrack dump (IPCTNL_MSG_CT_GET)"
        case deleteConntrack = "conntrack delete (IPCTNL_MSG_CT_DELETE)"
        case readConntrackEvents = "recv (conntrack events)"
        case pollConntrack = "poll (conntrack events)"
        // nf_tables (`NFTables`): `queue` is unused (0).
        case readCounter = "nftables counter (NFT_MSG_GETOBJ)"

        /// Whether the call was on a ctnetlink socket rather than a queue.
        public var isConntrack: Bool {
            switch self {
            case .openConntrack, .joinConntrackEvents, .dumpConntrack, .deleteConntrack, .readConntrackEvents, .pollConntrack: return true
            default: return false
            }
        }
    }

    public var call: Call
    public var queue: UInt16
    public var errno: Errno
    /// The kernel answers EPERM both to a caller without CAP_NET_ADMIN and to a bind of a
    /// queue that another socket owns; which one it was is decided when the error is made.
    public var queueOwnedByAnotherProcess: Bool

    public init(_ call: Call, queue: UInt16, errno: Errno, queueOwnedByAnotherProcess: Bool = false) {
        self.call = call
        self.queue = queue
        self.errno = errno
        self.queueOwnedByAnotherProcess = queueOwnedByAnotherProcess
    }

    /// A failed ctnetlink call (`Conntrack`).
    public init(conntrack call: Call, errno: Errno) {
        self.init(call, queue: 0, errno: errno)
    }

    public var description: String {
        if call.isConntrack { return conntrackDescription }
        if call == .readCounter { return counterDescription }
        if queueOwnedByAnotherProcess {
            return "cannot bind queue \(queue): another process owns it (is vpm already running?)"
        }
        switch (call, errno) {
        case (_, .notPermitted), (_, .permissionDenied):
            return "cannot \(verb) queue \(queue): permission denied (run as root or grant CAP_NET_ADMIN)"
        case (.bindQueue, .resourceBusy):
            return "cannot bind queue \(queue): another process owns it (is vpm already running?)"
        case (.bindQueue, .noSuchFileOrDirectory), (.configureQueue, .noSuchFileOrDirectory),
             (.openSocket, .protocolNotSupported), (.bindQueue, .protocolNotSupported):
            return "cannot \(verb) queue \(queue): the kernel has no nfnetlink_queue support (try `modprobe nfnetlink_queue`)"
        default:
            return "cannot \(verb) queue \(queue): \(call.rawValue) failed: \(errno) (errno \(errno.rawValue))"
        }
    }

    private var verb: String {
        switch call {
        case .openSocket, .bindSocket: return "open"
        case .setReceiveBuffer, .configureQueue: return "configure"
        case .bindQueue: return "bind"
        case .receive, .poll: return "read"
        case .sendVerdict: return "send a verdict on"
        case .wakeup: return "create the wake-up of"
        case .openConntrack: return "open"
        case .joinConntrackEvents: return "subscribe to events of"
        case .dumpConntrack: return "dump"
        case .deleteConntrack: return "delete entries of"
        case .readConntrackEvents, .pollConntrack: return "read events of"
        case .readCounter: return "read"
        }
    }

    private var counterDescription: String {
        switch errno {
        case .notPermitted, .permissionDenied:
            return "cannot read the nftables counter: permission denied (run as root or grant CAP_NET_ADMIN)"
        case .noSuchFileOrDirectory:
            return "cannot read the nftables counter: this namespace has no such table or counter (are the engine's rules installed?)"
        case .protocolNotSupported, .invalidArgument, .notSupported:
            return "cannot read the nftables counter: this kernel has no nf_tables netlink support (try `modprobe nf_tables`)"
        case .timedOut:
            return "cannot read the nftables counter: the kernel did not answer"
        default:
            return "cannot read the nftables counter: \(call.rawValue) failed: \(errno) (errno \(errno.rawValue))"
        }
    }

    private var conntrackDescription: String {
        let subject = "cannot \(verb) the conntrack table"
        switch (call, errno) {
        case (_, .notPermitted), (_, .permissionDenied):
            return "\(subject): permission denied (run as root or grant CAP_NET_ADMIN)"
        case (_, .protocolNotSupported), (_, .noSuchFileOrDirectory), (_, .addressFamilyNotSupported),
             (.dumpConntrack, .notSupported):
            return "\(subject): this kernel has no conntrack netlink support (try `modprobe nf_conntrack_netlink`)"
        case (.dumpConntrack, .invalidArgument):
            // nfnetlink also answers EINVAL for a subsystem that is not registered.
            return "\(subject): the kernel rejected the request (EINVAL); if conntrack netlink is missing, try `modprobe nf_conntrack_netlink`"
        case (_, .timedOut):
            return "\(subject): the kernel did not answer (\(call.rawValue) timed out)"
        default:
            return "\(subject): \(call.rawValue) failed: \(errno) (errno \(errno.rawValue))"
        }
    }
}
