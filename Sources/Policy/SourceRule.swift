public import FlowTable
/// One entry of `sources`: clients matching `match` belong to `aid`.
public struct SourceRule: Sendable {
    public var match: SourceMatch
    public var aid: AID
    /// The line of the rule in the configuration file (0 when built in code), for messages.
    public var line: Int

    public init(match: SourceMatch, aid: AID, line: Int = 0) {
        self.match = match
        self.aid = aid
        self.line = line
    }
}
