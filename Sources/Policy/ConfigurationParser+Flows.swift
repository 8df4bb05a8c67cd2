import FlowTable
import Yams

extension ConfigurationParser {
    static let flowKeys = ["capacity", "timeouts"]
    /// The file's names for the timeouts, in the order the docs list them.
    static var timeoutKeys: [(name: String, field: WritableKeyPath<FlowTimeouts, UInt64>)] {
        [
            ("opening", \.opening), ("established", \.established), ("closing", \.closing),
            ("closed", \.closed), ("udp", \.udp), ("udp-stream", \.udpStream),
        ]
    }

    func parseFlows(_ node: Node) throws(ConfigurationError) -> (capacity: Int, timeouts: FlowTimeouts) {
        let fields = try fields(of: node, named: "'flows'", allowed: Self.flowKeys)
        var capacity = Configuration.defaultFlowCapacity
        if let capacityNode = fields["capacity"] {
            capacity = try integer(capacityNode, named: "capacity", in: 1...Int(Int32.max))
        }
        var timeouts = FlowTimeouts.standard
        if let timeoutsNode = fields["timeouts"] {
            let timeoutFields = try self.fields(of: timeoutsNode, named: "'timeouts'", allowed: Self.timeoutKeys.map(\.name))
            for (name, field) in Self.timeoutKeys {
                guard let valueNode = timeoutFields[name] else { continue }
                let text = try scalar(valueNode, named: "timeout '\(name)'")
                timeouts[keyPath: field] = try value(at: valueNode) { () throws(InvalidValue) in
                    do throws(InvalidValue) {
                        return UInt64(try FlowTimeouts.seconds(parsing: text)) * 1000
                    } catch {
                        throw InvalidValue("timeout '\(name)': \(error.message)")
                    }
                }
            }
        }
        return (capacity, timeouts)
    }
}
