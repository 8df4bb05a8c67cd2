import Yams

// Yams's errors, restated at their line and column in the same form as ours.
extension ConfigurationParser {
    func translate(_ error: YamlError) -> ConfigurationError {
        switch error {
        case let .scanner(context, problem, mark, _),
             let .parser(context, problem, mark, _),
             let .composer(context, problem, mark, _):
            if problem == "but found another document" {
                return ConfigurationError(file: file, line: mark.line, column: mark.column, message: "the configuration must be a single YAML document; remove the '---' or '...' line here and everything after it that belongs to another document")
            }
            var message = "YAML syntax error: \(problem)"
            if let context {
                message += " (\(context.text) at line \(context.mark.line))"
            }
            if lineText(mark.line)?.contains("]:") == true || context.map({ lineText($0.mark.line)?.contains("]:") == true }) == true {
                message += "; quote a bracketed IPv6 source, as in from: \"[2001:db8::1]:5555\", because YAML reads an unquoted '[' as the start of a list"
            }
            if lineText(mark.line)?.contains("\t") == true || context.map({ lineText($0.mark.line)?.contains("\t") == true }) == true {
                message += "; YAML indents with spaces, and this line has a tab"
            }
            return ConfigurationError(file: file, line: mark.line, column: mark.column, message: message)
        case let .reader(problem, offset, _, _):
            let (line, column) = offset.map(position(ofCharacterOffset:)) ?? (nil, nil)
            return ConfigurationError(file: file, line: line, column: column, message: "YAML syntax error: \(problem)")
        case let .duplicatedKeysInMapping(duplicates, context):
            // Yams names the first occurrence (of the alphabetically first key); the line to fix
            // is usually the second one.
            let key = duplicates.first ?? "?"
            let first = context.mark
            let second = secondOccurrence(of: key, firstAt: first) ?? first
            return ConfigurationError(file: file, line: second.line, column: second.column, message: "key '\(key)' appears twice in the same mapping (first at line \(first.line)); each key may appear once, so merge the two entries")
        default:
            return ConfigurationError(file: file, message: "cannot parse the configuration: \(error)")
        }
    }

    private func lineText(_ line: Int) -> Substring? {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        return lines.indices.contains(line - 1) ? lines[line - 1] : nil
    }

    private func position(ofCharacterOffset offset: Int) -> (Int?, Int?) {
        var line = 1
        var column = 1
        for character in text.prefix(offset) {
            if character == "\n" { line += 1; column = 1 } else { column += 1 }
        }
        return (line, column)
    }

    /// Yams stops at the first duplicate, so to find the second we rename the first occurrence
    /// (prefixing a marker at its column), parse again, and look for the key beside the marker.
    private func secondOccurrence(of key: String, firstAt first: Mark) -> Mark? {
        let marker = "vpm-first-occurrence-"
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        guard lines.indices.contains(first.line - 1) else { return nil }
        var scalars = Array(lines[first.line - 1].unicodeScalars)
        guard first.column >= 1, first.column - 1 <= scalars.count else { return nil }
        scalars.insert(contentsOf: marker.unicodeScalars, at: first.column - 1)
        lines[first.line - 1] = String(String.UnicodeScalarView(scalars))
        guard let root = try? Yams.compose(yaml: lines.joined(separator: "\n"), .default, .default, .utf8) else { return nil }
        return find(key: key, besideKeyStartingWith: marker, in: root)
    }

    private func find(key: String, besideKeyStartingWith marker: String, in node: Node) -> Mark? {
        switch node {
        case .mapping(let mapping):
            if mapping.keys.contains(where: { $0.string?.hasPrefix(marker) == true }) {
                return mapping.keys.first(where: { $0.string == key })?.mark
            }
            for (_, value) in mapping {
                if let mark = find(key: key, besideKeyStartingWith: marker, in: value) { return mark }
            }
            return nil
        case .sequence(let sequence):
            for item in sequence {
                if let mark = find(key: key, besideKeyStartingWith: marker, in: item) { return mark }
            }
            return nil
        case .scalar, .alias:
            return nil
        }
    }
}
