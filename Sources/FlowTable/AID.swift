/// An application identifier: the name of one logical application (a tenant, a clone).
/// AIDs come from configuration, never from the application, and appear in file names,
/// CLI columns and control messages, so the alphabet is kept small and unambiguous.
public struct AID: Hashable, Sendable, Comparable, CustomStringConvertible, ExpressibleByStringLiteral {
    public let name: String

    public static let maximumLength = 64

    /// A validated AID, or nil when `name` is empty, longer than 64 characters, or uses a
    /// character other than A-Z a-z 0-9 `.` `_` `-`.
    public init?(_ name: String) {
        guard Self.problem(with: name) == nil else { return nil }
        self.name = name
    }

    /// For literals in code and tests; an invalid literal is a programming error. Note that
    /// `AID("acme")` with a literal argument also comes here, not to `init?(_:)`.
    public init(stringLiteral name: String) {
        precondition(Self.problem(with: name) == nil, "invalid AID literal '\(name)'")
        self.name = name
    }

    public var description: String { name }

    /// A flow whose AID is not known (rebuilt from a conntrack entry whose AID slot no
    /// longer names an application).
    public static let unknown: AID = "-"

    public static func < (lhs: AID, rhs: AID) -> Bool {
        lhs.name < rhs.name
    }

    /// Why `name` is not an AID, phrased for an error message, or nil when it is one.
    public static func problem(with name: String) -> String? {
        if name.isEmpty {
            return "an AID cannot be empty"
        }
        if name.utf8.count > maximumLength {
            return "AID '\(name)' is \(name.count) characters long; the limit is \(maximumLength)"
        }
        if let bad = name.unicodeScalars.first(where: { !isAllowed($0) }) {
            return "AID '\(name)' contains '\(bad)'; an AID may use only letters A-Z a-z, digits 0-9, '.', '_' and '-'"
        }
        return nil
    }

    private static func isAllowed(_ character: Unicode.Scalar) -> Bool {
        switch character {
        case "A"..."Z", "a"..."z", "0"..."9", ".", "_", "-": true
        default: false
        }
    }
}

/// On the wire and in the state file an AID is its name; decoding validates it.
extension AID: Codable {
    public init(from decoder: any Decoder) throws {
        let name = try decoder.singleValueContainer().decode(String.self)
        guard let aid = AID(name) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: AID.problem(with: name) ?? "not an AID"))
        }
        self = aid
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(name)
    }
}
