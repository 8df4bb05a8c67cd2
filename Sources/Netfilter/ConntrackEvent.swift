/// What the conntrack event socket delivered.
public enum ConntrackEvent: Sendable, Equatable {
    /// A new entry (IPCTNL_MSG_CT_NEW with NLM_F_CREATE).
    case new(ConntrackEntry)
    /// A change of state, mark, status... (IPCTNL_MSG_CT_NEW without NLM_F_CREATE).
    case update(ConntrackEntry)
    /// The entry is gone (IPCTNL_MSG_CT_DELETE); carries the final counters.
    case destroy(ConntrackEntry)
    /// ENOBUFS: the socket overflowed and events were lost. Dump to resynchronise.
    case overrun
}

/// The event groups a `Conntrack` can join (NFNLGRP_CONNTRACK_NEW / _UPDATE / _DESTROY).
public enum ConntrackEventKind: Sendable, Hashable, CaseIterable {
    case new
    case update
    case destroy
}

/// Counters of one `Conntrack`, owned by the thread that uses it.
public struct ConntrackStatistics: Sendable, Equatable, Codable {
    public var dumps: UInt64 = 0
    /// Entries the kernel sent in dumps (before the userspace mark check).
    public var entriesReceived: UInt64 = 0
    /// Dumped entries whose mark did not match: the kernel did not filter them.
    public var entriesFilteredInUserspace: UInt64 = 0
    /// Dumps the kernel refused to filter by mark (EOPNOTSUPP/EINVAL), redone unfiltered.
    public var kernelFilterRefusals: UInt64 = 0
    public var events: UInt64 = 0
    /// ENOBUFS on the event socket: events were lost.
    public var eventOverruns: UInt64 = 0
    /// Messages that were not conntrack entries or could not be parsed.
    public var unexpectedMessages: UInt64 = 0
    public init() {}
}
