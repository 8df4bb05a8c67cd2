public import Control

/// What one scrape shows: the engine's counters as `vpm stats` reads them, per queue where
/// each queue keeps its own, and the gauges only the engine knows (flows per AID and mode,
/// virtual ports).
public struct MetricsSnapshot: Sendable {
    /// One AID's flows in one mode ("sourceRouted", "cooperative", "local").
    public struct FlowGroup: Sendable, Equatable {
        public var aid: String
        public var mode: String
        public var count: Int

        public init(aid: String, mode: String, count: Int) {
            self.aid = aid
            self.mode = mode
            self.count = count
        }
    }

    public var version: String
    public var datapath: String
    /// Queue-scoped counters (`EngineCounter.Scope.queue`) and drop reasons, by queue number.
    public var queues: [(queue: UInt16, statistics: EngineStatistics)]
    /// The whole engine, as `vpm stats` shows it: engine-scoped counters and negotiations
    /// are read from here.
    public var total: EngineStatistics
    public var flows: [FlowGroup]
    public var virtualPortsInUse: Int
    public var virtualPortsFree: Int

    public init(version: String, datapath: String, queues: [(queue: UInt16, statistics: EngineStatistics)],
                total: EngineStatistics, flows: [FlowGroup], virtualPortsInUse: Int, virtualPortsFree: Int) {
        self.version = version
        self.datapath = datapath
        self.queues = queues
        self.total = total
        self.flows = flows
        self.virtualPortsInUse = virtualPortsInUse
        self.virtualPortsFree = virtualPortsFree
    }
}
