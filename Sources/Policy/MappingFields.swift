import Yams

/// The values of one YAML mapping by key, after `ConfigurationParser.fields` checked the keys.
struct MappingFields {
    /// The mapping itself: a missing key is reported at its line.
    let node: Node
    /// How messages name the mapping: "the configuration", "application 'acme'".
    let name: String
    var values: [String: Node] = [:]

    init(node: Node, name: String) {
        self.node = node
        self.name = name
    }

    subscript(key: String) -> Node? {
        values[key]
    }

    func required(_ key: String, parser: ConfigurationParser) throws(ConfigurationError) -> Node {
        guard let value = values[key] else {
            throw parser.failure("\(name) is missing the required key '\(key)'", at: node)
        }
        return value
    }
}
