import FlowTable
import Yams

extension ConfigurationParser {
    static let allocationKeys = ["when-exhausted", "wait-timeout"]

    func parseAllocation(_ node: Node) throws(ConfigurationError) -> AllocationPolicy {
        let fields = try fields(of: node, named: "'allocation'", allowed: Self.allocationKeys)
        var policy = AllocationPolicy.standard
        if let modeNode = fields["when-exhausted"] {
            let text = try scalar(modeNode, named: "'when-exhausted'")
            guard let mode = AllocationPolicy.WhenExhausted(rawValue: text) else {
                let choices = AllocationPolicy.WhenExhausted.allCases.map(\.rawValue).joined(separator: " or ")
                throw failure("'when-exhausted' must be \(choices); found '\(text)'", at: modeNode)
            }
            policy.whenExhausted = mode
        }
        if let timeoutNode = fields["wait-timeout"] {
            let text = try scalar(timeoutNode, named: "'wait-timeout'")
            policy.waitTimeout = try value(at: timeoutNode) { () throws(InvalidValue) in
                do throws(InvalidValue) {
                    return try FlowTimeouts.seconds(parsing: text)
                } catch {
                    throw InvalidValue("'wait-timeout': \(error.message)")
                }
            }
        }
        return policy
    }
}
