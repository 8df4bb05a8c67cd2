import Yams

// Reading YAML nodes as the shapes the format expects, with errors that point at the node.
extension ConfigurationParser {
    func failure(_ message: String, at node: Node?) -> ConfigurationError {
        ConfigurationError(file: file, line: node?.mark?.line, column: node?.mark?.column, message: message)
    }

    func line(of node: Node) -> Int {
        node.mark?.line ?? 0
    }

    /// Runs a value parser and places its error at `node`.
    func value<Result>(at node: Node, _ body: () throws(InvalidValue) -> Result) throws(ConfigurationError) -> Result {
        do {
            return try body()
        } catch {
            throw failure(error.message, at: node)
        }
    }

    func isNull(_ node: Node) -> Bool {
        if case .scalar = node { return node.tag.rawValue == Tag.Name.null.rawValue }
        return false
    }

    /// How a node looks, for "expected X, found Y" messages.
    func describe(_ node: Node) -> String {
        switch node {
        case .mapping: "a mapping"
        case .sequence: "a list"
        case .scalar(let scalar): isNull(node) ? "nothing" : "'\(scalar.string)'"
        case .alias: "an alias"
        }
    }

    /// The text of a scalar; a number is taken as written, so "9000" and 9000 read the same.
    func scalar(_ node: Node, named name: String) throws(ConfigurationError) -> String {
        guard case .scalar(let scalar) = node else {
            throw failure("\(name) must be a single value, found \(describe(node))", at: node)
        }
        guard !isNull(node) else {
            throw failure("\(name) has no value", at: node)
        }
        return scalar.string
    }

    func integer(_ node: Node, named name: String, in range: ClosedRange<Int>) throws(ConfigurationError) -> Int {
        let text = try scalar(node, named: "'\(name)'")
        guard DecimalNumber.isDigits(text[...]) else {
            throw failure("'\(name)' must be a whole number from \(range.lowerBound) to \(range.upperBound), found '\(text)'", at: node)
        }
        guard let value = DecimalNumber.parse(text[...], maximum: UInt64(range.upperBound)), value >= range.lowerBound else {
            throw failure("'\(name)' is \(text), out of range; it must be from \(range.lowerBound) to \(range.upperBound)", at: node)
        }
        return Int(value)
    }

    /// The items of a list; nothing (`key:` alone) is an empty list.
    func sequence(_ node: Node, named name: String, example: String) throws(ConfigurationError) -> [Node] {
        if isNull(node) { return [] }
        guard case .sequence(let sequence) = node else {
            throw failure("'\(name)' must be a list such as \(example), found \(describe(node))", at: node)
        }
        return Array(sequence)
    }

    /// The pairs of a mapping; nothing (`key:` alone) is an empty mapping.
    func mapping(_ node: Node, named name: String, example: String) throws(ConfigurationError) -> [(key: Node, value: Node)] {
        if isNull(node) { return [] }
        guard case .mapping(let mapping) = node else {
            throw failure("\(name) must be a mapping such as \(example), found \(describe(node))", at: node)
        }
        return Array(mapping)
    }

    /// The keys of a mapping checked against the ones the format defines, so a misspelt key
    /// is an error rather than a silently ignored setting.
    func fields(of node: Node, named name: String, allowed: [String]) throws(ConfigurationError) -> MappingFields {
        let example = allowed.prefix(2).map { "\($0): ..." }.joined(separator: ", ")
        let pairs = try mapping(node, named: name, example: "{\(example)}")
        var fields = MappingFields(node: node, name: name)
        for (key, value) in pairs {
            let keyText = try scalar(key, named: "a key")
            guard allowed.contains(keyText) else {
                var message = "unknown key '\(keyText)' in \(name)"
                if let suggestion = KeySuggestion.closest(to: keyText, among: allowed) {
                    message += "; did you mean '\(suggestion)'?"
                } else {
                    message += "."
                }
                message += " The keys are: \(allowed.joined(separator: ", "))"
                throw failure(message, at: key)
            }
            fields.values[keyText] = value
        }
        return fields
    }
}
