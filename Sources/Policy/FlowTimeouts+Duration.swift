public import FlowTable

// Durations in the configuration file: "30s", "10m", "2h", "5d", or plain seconds (the flow
// table keeps milliseconds).
extension FlowTimeouts {
    /// Seconds in `text`: digits alone are seconds; digits followed by s, m, h or d scale.
    static func seconds(parsing text: String) throws(InvalidValue) -> UInt32 {
        let hint = "write whole seconds (300) or a number with a unit s, m, h or d (30s, 10m, 2h, 5d)"
        var digits = text[...]
        var unit: UInt64 = 1
        if let last = text.last, !last.isNumber {
            switch last {
            case "s": unit = 1
            case "m": unit = 60
            case "h": unit = 3_600
            case "d": unit = 86_400
            default: throw InvalidValue("'\(text)' is not a duration; \(hint)")
            }
            digits = text.dropLast()
        }
        guard DecimalNumber.isDigits(digits) else {
            throw InvalidValue("'\(text)' is not a duration; \(hint)")
        }
        guard let count = DecimalNumber.parse(digits, maximum: UInt64(UInt32.max)),
              count * unit <= UInt64(UInt32.max) else {
            throw InvalidValue("duration '\(text)' is too long; the limit is \(UInt32.max) seconds (about 136 years)")
        }
        guard count > 0 else {
            throw InvalidValue("duration '\(text)' is zero; a timeout must be at least 1s")
        }
        return UInt32(count * unit)
    }

    /// The shortest text that `seconds(parsing:)` reads back as `seconds`: "5d", "2m", "90s".
    public static func text(seconds: UInt32) -> String {
        for (unit, suffix) in [(UInt32(86_400), "d"), (3_600, "h"), (60, "m")] where seconds != 0 && seconds % unit == 0 {
            return "\(seconds / unit)\(suffix)"
        }
        return "\(seconds)s"
    }
}
