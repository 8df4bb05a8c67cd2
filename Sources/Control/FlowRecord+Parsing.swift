/// The CLI's side of `FlowRecord.appendPiece`: a `vpm flows` piece line read back by hand.
/// Foundation's JSONDecoder took about 15 µs per flow, three quarters of `vpm flows`' time at
/// a million flows. This reads exactly what `appendPiece` writes — those keys in that order,
/// integers, seconds to the millisecond, strings with its escapes — and answers nil for
/// anything else (another engine's encoder, a Double written as Swift writes it, an error
/// line), which the caller then gives to JSONDecoder: the result is the same either way.
extension FlowRecord {
    /// The response a piece line (without its newline) holds, or nil when it is not in
    /// `appendPiece`'s exact form.
    public static func parsePiece(_ line: UnsafeRawBufferPointer) -> ControlResponse? {
        var reader = PieceReader(bytes: line)
        guard reader.literal(#"{"flows":["#) else { return nil }
        var records: [FlowRecord] = []
        if !reader.literal("]") {
            repeat {
                guard let record = reader.record() else { return nil }
                records.append(record)
            } while reader.literal(",")
            guard reader.literal("]") else { return nil }
        }
        let more = reader.literal(#","more":true"#)
        guard reader.literal("}"), reader.atEnd else { return nil }
        return ControlResponse(flows: records, more: more)
    }
}

/// A cursor over one line; every method consumes only on success (or the caller gives up on
/// the whole line).
private struct PieceReader {
    let bytes: UnsafeRawBufferPointer
    var offset = 0

    init(bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    var atEnd: Bool { offset == bytes.count }

    /// Consumes `text` if the line continues with it.
    mutating func literal(_ text: StaticString) -> Bool {
        // withUTF8Buffer, not utf8CodeUnitCount: a one-character literal is held as a
        // scalar, without the pointer utf8CodeUnitCount reads.
        let (equal, count) = text.withUTF8Buffer { expected -> (Bool, Int) in
            guard bytes.count - offset >= expected.count else { return (false, 0) }
            for index in 0..<expected.count where bytes[offset + index] != expected[index] { return (false, 0) }
            return (true, expected.count)
        }
        if equal { offset += count }
        return equal
    }

    /// `,"name":` (or `{"name":` for the first key).
    mutating func key(_ name: StaticString, first: Bool = false) -> Bool {
        let start = offset
        guard literal(first ? "{\"" : ",\""), literal(name), literal("\":") else {
            offset = start  // `peer` is optional: the next key is tried from the same place
            return false
        }
        return true
    }

    mutating func record() -> FlowRecord? {
        guard key("age", first: true), let age = seconds(),
              key("aid"), let aid = string(),
              key("bytesToClient"), let bytesToClient = integer(),
              key("bytesToServer"), let bytesToServer = integer(),
              key("client"), let client = string(),
              key("clientPort"), let clientPort = integer().flatMap(UInt16.init(exactly:)),
              key("idle"), let idle = seconds(),
              key("initialPort"), let initialPort = integer().flatMap(UInt16.init(exactly:)),
              key("mode"), let mode = string(),
              key("packetsToClient"), let packetsToClient = integer(),
              key("packetsToServer"), let packetsToServer = integer()
        else { return nil }
        var peer: String?
        if key("peer") {
            guard let value = string() else { return nil }
            peer = value
        }
        guard key("server"), let server = string(),
              key("state"), let state = string(),
              key("transport"), let transport = string(),
              key("virtualPort"), let virtualPort = integer().flatMap(UInt16.init(exactly:)),
              literal("}")
        else { return nil }
        return FlowRecord(transport: transport, state: state, mode: mode, client: client, clientPort: clientPort,
                          server: server, initialPort: initialPort, virtualPort: virtualPort, aid: aid, peer: peer,
                          age: age, idle: idle, packetsToServer: packetsToServer, bytesToServer: bytesToServer,
                          packetsToClient: packetsToClient, bytesToClient: bytesToClient)
    }

    /// Digits, as `appendInteger` writes them: no sign, no leading zero, at most UInt64.max.
    mutating func integer() -> UInt64? {
        let start = offset
        var value: UInt64 = 0
        while offset < bytes.count, case let digit = bytes[offset] &- UInt8(ascii: "0"), digit < 10 {
            let (times, overflow) = value.multipliedReportingOverflow(by: 10)
            let (sum, carry) = times.addingReportingOverflow(UInt64(digit))
            guard !overflow, !carry else { return nil }
            value = sum
            offset += 1
        }
        let count = offset - start
        guard count > 0, count == 1 || bytes[start] != UInt8(ascii: "0") else { return nil }
        return value
    }

    /// Seconds as `appendSeconds` writes whole milliseconds: digits, then a point and one to
    /// three digits without a trailing zero. The value is the milliseconds over 1000, which
    /// is the Double the decimal reads as (both are the exact quotient, rounded once).
    mutating func seconds() -> Double? {
        guard let whole = integer(), whole < 9_000_000_000_000 else { return nil }
        var milliseconds = whole * 1000
        if literal(".") {
            var scale: UInt64 = 100
            var digits = 0
            var last: UInt8 = 0
            while offset < bytes.count, case let digit = bytes[offset] &- UInt8(ascii: "0"), digit < 10 {
                guard digits < 3 else { return nil }
                milliseconds += UInt64(digit) * scale
                scale /= 10
                digits += 1
                last = digit
                offset += 1
            }
            guard digits > 0, last != 0 else { return nil }
        }
        // An exponent or more digits: Swift's own description, for JSONDecoder.
        if offset < bytes.count, bytes[offset] == UInt8(ascii: "e") || bytes[offset] == UInt8(ascii: "E") { return nil }
        return Double(milliseconds) / 1000
    }

    /// A string as `appendString` writes it: `\"`, `\\`, `\n`, `\r`, `\t` and `\u00XX` are
    /// its only escapes; any other makes the line the decoder's.
    mutating func string() -> String? {
        guard literal("\"") else { return nil }
        let start = offset
        var escaped = false
        while offset < bytes.count {
            let byte = bytes[offset]
            if byte == UInt8(ascii: "\"") { break }
            if byte == UInt8(ascii: "\\") { escaped = true; offset += 1 }
            if byte < 0x20 { return nil }
            offset += 1
        }
        guard offset < bytes.count else { return nil }
        let raw = UnsafeRawBufferPointer(rebasing: bytes[start..<offset])
        offset += 1
        guard escaped else {
            // JSONDecoder refuses invalid UTF-8; so does this, by handing the line over.
            return String(validating: raw, as: UTF8.self)
        }
        var unescaped: [UInt8] = []
        unescaped.reserveCapacity(raw.count)
        var index = 0
        while index < raw.count {
            let byte = raw[index]
            index += 1
            guard byte == UInt8(ascii: "\\") else { unescaped.append(byte); continue }
            guard index < raw.count else { return nil }
            let kind = raw[index]
            index += 1
            switch kind {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"): unescaped.append(kind)
            case UInt8(ascii: "n"): unescaped.append(UInt8(ascii: "\n"))
            case UInt8(ascii: "r"): unescaped.append(UInt8(ascii: "\r"))
            case UInt8(ascii: "t"): unescaped.append(UInt8(ascii: "\t"))
            case UInt8(ascii: "u"):
                guard raw.count - index >= 4, raw[index] == UInt8(ascii: "0"), raw[index + 1] == UInt8(ascii: "0"),
                      let high = Self.hexDigit(raw[index + 2]), let low = Self.hexDigit(raw[index + 3]), high < 2
                else { return nil }
                unescaped.append(high << 4 | low)
                index += 4
            default: return nil
            }
        }
        return String(validating: unescaped, as: UTF8.self)
    }

    static func hexDigit(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
