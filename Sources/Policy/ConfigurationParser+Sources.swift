public import FlowTable
import Yams

extension ConfigurationParser {
    static let sourceKeys = ["from", "aid"]

    func parseSources(_ node: Node, applications: [Application]) throws(ConfigurationError) -> [SourceRule] {
        let items = try sequence(node, named: "sources", example: "[{from: 198.18.1.0/24, aid: acme}]")
        var rules: [SourceRule] = []
        var overlaps = SourceOverlapIndex()
        let aids = Set(applications.map(\.aid))
        for item in items {
            let fields = try fields(of: item, named: "a source", allowed: Self.sourceKeys)
            let fromNode = try fields.required("from", parser: self)
            let aidNode = try fields.required("aid", parser: self)
            if case .sequence = fromNode {
                // Unquoted, YAML reads "[2001:db8::1]" as a list holding the address.
                throw failure("'from' must be a single value, found a list; quote a bracketed IPv6 source: from: \"[2001:db8::1]:5555\"", at: fromNode)
            }
            let text = try scalar(fromNode, named: "'from'")
            let match = try value(at: fromNode) { () throws(InvalidValue) in try SourceMatch.parse(text) }
            let aid = try aid(aidNode)
            guard aids.contains(aid) else {
                let known = applications.map(\.aid.name).sorted()
                let list = known.isEmpty ? "there are none yet; add it under 'applications'" : "the AIDs are: \(known.joined(separator: ", "))"
                throw failure("source \(match) names the unknown AID '\(aid)'; \(list)", at: aidNode)
            }
            if let index = overlaps.add(match) {
                let earlier = rules[index]
                let sameAID = earlier.aid == aid ? " (both for '\(aid)', so one is redundant)" : " ('\(earlier.aid)' and '\(aid)')"
                throw failure("source \(match) overlaps \(earlier.match) (line \(earlier.line))\(sameAID); a client must belong to one AID, so make the sources disjoint", at: fromNode)
            }
            rules.append(SourceRule(match: match, aid: aid, line: line(of: fromNode)))
        }
        return rules
    }
}
