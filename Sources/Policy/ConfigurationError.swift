/// A configuration that cannot be used, with where the problem is and what to do about it.
/// `description` reads like a compiler diagnostic: "vpm.yaml:14:11: source ... (line 11)".
public struct ConfigurationError: Error, Sendable, CustomStringConvertible {
    public var file: String
    /// 1-based; nil when the problem has no single place (an unreadable file).
    public var line: Int?
    /// 1-based, in Unicode scalars, like Yams and libyaml.
    public var column: Int?
    public var message: String

    public init(file: String, line: Int? = nil, column: Int? = nil, message: String) {
        self.file = file
        self.line = line
        self.column = column
        self.message = message
    }

    public var description: String {
        var location = file
        if let line {
            location += ":\(line)"
            if let column { location += ":\(column)" }
        }
        return "\(location): \(message)"
    }
}
