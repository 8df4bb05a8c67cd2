/// Strict decimal parsing for configuration values. `Int(_:)` would also accept "+9000" and
/// "-0"; a port or a count written like that is more likely a typo than an intention.
enum DecimalNumber {
    /// The value of `text` if it is one or more ASCII digits and at most `maximum`.
    static func parse(_ text: Substring, maximum: UInt64 = .max) -> UInt64? {
        guard !text.isEmpty else { return nil }
        var value: UInt64 = 0
        for character in text.utf8 {
            guard character >= UInt8(ascii: "0"), character <= UInt8(ascii: "9") else { return nil }
            let (times10, overflow1) = value.multipliedReportingOverflow(by: 10)
            let (sum, overflow2) = times10.addingReportingOverflow(UInt64(character - UInt8(ascii: "0")))
            guard !overflow1, !overflow2, sum <= maximum else { return nil }
            value = sum
        }
        return value
    }

    static func isDigits(_ text: Substring) -> Bool {
        !text.isEmpty && text.utf8.allSatisfy { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }
    }

    /// A TCP or UDP port, 1-65535: port 0 means "any port" to the kernel and cannot be
    /// multiplexed or routed to.
    static func port(_ text: Substring) throws(InvalidValue) -> UInt16 {
        guard isDigits(text) else {
            throw InvalidValue("'\(text)' is not a port number; ports are whole numbers from 1 to 65535")
        }
        guard let value = parse(text, maximum: 65535) else {
            throw InvalidValue("port \(text) is out of range; ports are 1-65535")
        }
        guard value != 0 else {
            throw InvalidValue("port 0 is not allowed; ports are 1-65535")
        }
        return UInt16(value)
    }
}
