/// `vpm flows` answers a large table a piece at a time (`ControlRequest.pieces`): each piece
/// is one line `{"flows":[...],"more":true}`, the last without `more`. The lines are written
/// by hand here, not by Foundation's encoder, which cost about 60 µs per flow and built the
/// whole answer in memory (a million flows took the engine to a gigabyte and past the CLI's
/// deadline). The result is the JSON `ControlResponse`'s decoder reads: the same keys and
/// values `JSONEncoder` writes, in the same order as its sorted keys.
extension FlowRecord {
    /// Appends one control answer line (newline included) carrying `records`.
    public static func appendPiece<Records: Sequence<FlowRecord>>(_ records: Records, more: Bool, to line: inout [UInt8]) {
        line.append(contentsOf: #"{"flows":["#.utf8)
        var first = true
        for record in records {
            if !first { line.append(UInt8(ascii: ",")) }
            first = false
            record.appendJSON(to: &line)
        }
        line.append(UInt8(ascii: "]"))
        if more { line.append(contentsOf: #","more":true"#.utf8) }
        line.append(contentsOf: "}\n".utf8)
    }

    /// Appends this record as one JSON object, keys sorted as `JSONEncoder` sorts them.
    public func appendJSON(to out: inout [UInt8]) {
        out.append(contentsOf: #"{"age":"#.utf8)
        Self.appendSeconds(age, to: &out)
        Self.appendKey("aid", to: &out)
        Self.appendString(aid, to: &out)
        Self.appendKey("bytesToClient", to: &out)
        Self.appendInteger(bytesToClient, to: &out)
        Self.appendKey("bytesToServer", to: &out)
        Self.appendInteger(bytesToServer, to: &out)
        Self.appendKey("client", to: &out)
        Self.appendString(client, to: &out)
        Self.appendKey("clientPort", to: &out)
        Self.appendInteger(UInt64(clientPort), to: &out)
        Self.appendKey("idle", to: &out)
        Self.appendSeconds(idle, to: &out)
        Self.appendKey("initialPort", to: &out)
        Self.appendInteger(UInt64(initialPort), to: &out)
        Self.appendKey("mode", to: &out)
        Self.appendString(mode, to: &out)
        Self.appendKey("packetsToClient", to: &out)
        Self.appendInteger(packetsToClient, to: &out)
        Self.appendKey("packetsToServer", to: &out)
        Self.appendInteger(packetsToServer, to: &out)
        if let peer {
            Self.appendKey("peer", to: &out)
            Self.appendString(peer, to: &out)
        }
        Self.appendKey("server", to: &out)
        Self.appendString(server, to: &out)
        Self.appendKey("state", to: &out)
        Self.appendString(state, to: &out)
        Self.appendKey("transport", to: &out)
        Self.appendString(transport, to: &out)
        Self.appendKey("virtualPort", to: &out)
        Self.appendInteger(UInt64(virtualPort), to: &out)
        out.append(UInt8(ascii: "}"))
    }

    /// `,"name":`
    static func appendKey(_ name: StaticString, to out: inout [UInt8]) {
        out.append(UInt8(ascii: ","))
        out.append(UInt8(ascii: "\""))
        name.withUTF8Buffer { out.append(contentsOf: $0) }
        out.append(UInt8(ascii: "\""))
        out.append(UInt8(ascii: ":"))
    }

    static func appendInteger(_ value: UInt64, to out: inout [UInt8]) {
        var divisor: UInt64 = 1
        while value / divisor >= 10 { divisor *= 10 }
        while divisor > 0 {
            out.append(UInt8(ascii: "0") + UInt8(value / divisor % 10))
            divisor /= 10
        }
    }

    /// Ages and idle times are milliseconds over 1000: written to the millisecond, without
    /// trailing zeros (75, 1.5, 0.042). Anything else (not whole milliseconds, negative,
    /// beyond what a Double holds exactly in milliseconds) as Swift writes a Double, which
    /// JSON reads back as the same value; not finite (never made) as 0.
    static func appendSeconds(_ seconds: Double, to out: inout [UInt8]) {
        let whole = seconds.isFinite && seconds >= 0 && seconds < 9e12 ? UInt64((seconds * 1000).rounded()) : nil
        guard let milliseconds = whole, Double(milliseconds) / 1000 == seconds else {
            out.append(contentsOf: (seconds.isFinite ? "\(seconds)" : "0").utf8)
            return
        }
        appendInteger(milliseconds / 1000, to: &out)
        var fraction = milliseconds % 1000
        guard fraction != 0 else { return }
        out.append(UInt8(ascii: "."))
        var divisor: UInt64 = 100
        while fraction != 0 {
            out.append(UInt8(ascii: "0") + UInt8(fraction / divisor))
            fraction %= divisor
            divisor /= 10
        }
    }

    /// A JSON string: quotes, backslashes and control characters escaped (newline, return
    /// and tab by their short escapes), the rest of the UTF-8 as it is.
    static func appendString(_ value: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for byte in value.utf8 {
            switch byte {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"):
                out.append(UInt8(ascii: "\\"))
                out.append(byte)
            case UInt8(ascii: "\n"): out.append(contentsOf: #"\n"#.utf8)
            case UInt8(ascii: "\r"): out.append(contentsOf: #"\r"#.utf8)
            case UInt8(ascii: "\t"): out.append(contentsOf: #"\t"#.utf8)
            case 0..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                out.append(contentsOf: #"\u00"#.utf8)
                out.append(hex[Int(byte >> 4)])
                out.append(hex[Int(byte & 0xf)])
            default:
                out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}
