/// "did you mean 'virtual-ports'?" for a misspelt key: the allowed key within a small edit
/// distance, so typos get a hint and unrelated words do not.
enum KeySuggestion {
    static func closest(to word: String, among candidates: [String]) -> String? {
        let limit = max(1, word.count / 3)
        var best: (candidate: String, distance: Int)?
        for candidate in candidates {
            let distance = editDistance(Array(word.lowercased().unicodeScalars), Array(candidate.unicodeScalars))
            if distance <= limit, distance < best?.distance ?? .max {
                best = (candidate, distance)
            }
        }
        return best?.candidate
    }

    /// Levenshtein distance: insertions, deletions and substitutions each cost 1.
    static func editDistance(_ first: [Unicode.Scalar], _ second: [Unicode.Scalar]) -> Int {
        var previous = Array(0...second.count)
        var current = previous
        for (i, a) in first.enumerated() {
            current[0] = i + 1
            for (j, b) in second.enumerated() {
                current[j + 1] = min(previous[j + 1] + 1, current[j] + 1, previous[j] + (a == b ? 0 : 1))
            }
            swap(&previous, &current)
        }
        return previous[second.count]
    }
}
