// Text forms: dotted quad for IPv4, RFC 4291 §2.2 input and RFC 5952 output for IPv6.
extension IPAddress: CustomStringConvertible, LosslessStringConvertible {
    /// Parses a dotted quad ("192.0.2.1", no leading zeros, which some parsers read as
    /// octal) or IPv6 text ("2001:db8::1", "::ffff:192.0.2.1"). Zone identifiers are rejected.
    public init?(_ text: String) {
        let characters = Array(text.utf8)
        if !characters.contains(UInt8(ascii: ":")) {
            guard let value = Self.parseIPv4(characters[...]) else { return nil }
            self.init(ipv4: value)
            return
        }
        guard let groups = Self.parseIPv6(characters) else { return nil }
        var high: UInt64 = 0
        var low: UInt64 = 0
        for index in 0..<4 {
            high = high << 16 | UInt64(groups[index])
            low = low << 16 | UInt64(groups[index + 4])
        }
        self.init(high: high, low: low)
    }

    /// `a.b.c.d:port`, or `[v6]:port` (RFC 5952 §6): the one way vpm writes an endpoint.
    public func endpoint(_ port: UInt16) -> String {
        isIPv4 ? "\(self):\(port)" : "[\(self)]:\(port)"
    }

    /// Dotted quad for IPv4 (mapped) addresses, RFC 5952 canonical text otherwise.
    public var description: String {
        if let value = ipv4Value {
            return "\(value >> 24).\(value >> 16 & 0xFF).\(value >> 8 & 0xFF).\(value & 0xFF)"
        }
        // RFC 5952 §4.2: compress the longest run of two or more zero groups, the first on a tie.
        var bestStart = -1
        var bestLength = 1
        var index = 0
        while index < 8 {
            if group(index) == 0 {
                var end = index
                while end < 8 && group(end) == 0 { end += 1 }
                if end - index > bestLength {
                    bestStart = index
                    bestLength = end - index
                }
                index = end
            } else {
                index += 1
            }
        }
        var text = ""
        index = 0
        while index < 8 {
            if index == bestStart {
                text += "::"
                index += bestLength
                continue
            }
            if !text.isEmpty && !text.hasSuffix(":") { text += ":" }
            text += String(group(index), radix: 16)
            index += 1
        }
        return text
    }

    private static func parseIPv4(_ text: ArraySlice<UInt8>) -> UInt32? {
        var value: UInt32 = 0
        var parts = 0
        var part: UInt32 = 0
        var digits = 0
        var leadingZero = false
        for character in text {
            if character == UInt8(ascii: ".") {
                guard digits > 0, parts < 3 else { return nil }
                value = value << 8 | part
                parts += 1
                part = 0
                digits = 0
                continue
            }
            guard character >= UInt8(ascii: "0"), character <= UInt8(ascii: "9") else { return nil }
            if digits == 0 { leadingZero = character == UInt8(ascii: "0") } else if leadingZero { return nil }
            part = part * 10 + UInt32(character - UInt8(ascii: "0"))
            digits += 1
            guard digits <= 3, part <= 255 else { return nil }
        }
        guard digits > 0, parts == 3 else { return nil }
        return value << 8 | part
    }

    private static func parseIPv6(_ text: [UInt8]) -> [UInt16]? {
        let colon = UInt8(ascii: ":")
        var groups: [UInt16] = []
        var compressedAt: Int? = nil
        var index = 0
        let count = text.count
        if count >= 2 && text[0] == colon && text[1] == colon {
            compressedAt = 0
            index = 2
        } else if text.first == colon {
            return nil
        }
        while index < count {
            let start = index
            var value = 0
            while index < count, let digit = hexValue(text[index]) {
                value = value << 4 | digit
                index += 1
                guard index - start <= 4 else { return nil }
            }
            if index < count && text[index] == UInt8(ascii: ".") {
                // An embedded IPv4 address ends the text and fills the last two groups.
                guard groups.count <= 6, let ipv4 = parseIPv4(text[start...]) else { return nil }
                groups.append(UInt16(truncatingIfNeeded: ipv4 >> 16))
                groups.append(UInt16(truncatingIfNeeded: ipv4))
                index = count
                break
            }
            guard index > start else { return nil }
            groups.append(UInt16(value))
            if index == count { break }
            guard text[index] == colon else { return nil }
            index += 1
            if index < count && text[index] == colon {
                guard compressedAt == nil else { return nil }
                compressedAt = groups.count
                index += 1
            } else if index == count {
                return nil
            }
        }
        if let compressedAt {
            guard groups.count <= 7 else { return nil }
            groups.insert(contentsOf: repeatElement(0, count: 8 - groups.count), at: compressedAt)
        }
        return groups.count == 8 ? groups : nil
    }

    private static func hexValue(_ character: UInt8) -> Int? {
        switch character {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): Int(character - UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): Int(character - UInt8(ascii: "a")) + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): Int(character - UInt8(ascii: "A")) + 10
        default: nil
        }
    }
}
