/// A range of ports written low-high, such as 20000-20999: the configuration's
/// `virtual-ports`, a peer's and the fleet's, and an engine's entry in a fleet's directory.
public enum PortRange {
    /// The range `text` names; nil when it names none.
    public static func parse(_ text: some StringProtocol) -> ClosedRange<UInt16>? {
        try? parse(Substring(text), named: "a range")
    }

    /// The range `text` names, or why it names none (`name` says what the text is).
    static func parse(_ text: Substring, named name: String) throws(InvalidValue) -> ClosedRange<UInt16> {
        let bounds = text.split(separator: "-", omittingEmptySubsequences: false)
        guard bounds.count == 2 else {
            throw InvalidValue("\(name) must be a range of ports written low-high, such as 20000-20999; found '\(text)'")
        }
        let low = try DecimalNumber.port(bounds[0]), high = try DecimalNumber.port(bounds[1])
        guard low <= high else {
            throw InvalidValue("\(name) \(text) is reversed; write the lower port first: \(high)-\(low)")
        }
        return low...high
    }
}
