/// Reads a scrape of the metrics endpoint (the Prometheus text format) in the tests.
public enum PrometheusText {
    /// "name{labels}" → value, comments left out.
    public static func samples(_ text: String) -> [String: Double] {
        var samples: [String: Double] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
            samples[String(line[..<space])] = value
        }
        return samples
    }

    /// The sum of a metric's samples over all its labels; nil when it has none.
    public static func total(_ samples: [String: Double], _ name: String) -> Double? {
        let matching = samples.filter { $0.key == name || $0.key.hasPrefix(name + "{") }
        return matching.isEmpty ? nil : matching.values.reduce(0, +)
    }
}
