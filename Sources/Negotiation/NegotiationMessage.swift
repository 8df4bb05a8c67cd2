public import Crypto
import Foundation

/// The wire format of the negotiation channel (docs/negotiation.md): one line per message,
///
///     VPM1 <base64 of a UTF-8 JSON body> <lowercase hex HMAC-SHA256 of "VPM1 <base64>">\n
///
/// The MAC covers the exact bytes sent, so no JSON canonicalisation is needed, and it is
/// checked before the body is decoded: nothing an unauthenticated peer sends is parsed
/// beyond the framing.
public enum NegotiationMessage {
    /// The first field of every line. A new framing would get a new magic.
    public static let magic = "VPM1"
    /// The only body version this implementation speaks.
    public static let version = 1
    /// The longest line accepted or sent, the terminating "\n" included.
    public static let maximumLineLength = 4096
    /// A message whose timestamp is further than this from the receiver's clock is stale.
    public static let timestampToleranceMilliseconds: Int64 = 30_000
    /// How long the server remembers a request nonce: twice the tolerance, so a nonce is
    /// forgotten only after its message has become stale.
    public static let replayWindowMilliseconds: Int64 = 60_000
    /// How long the server waits for a complete request line after accepting a connection.
    public static let readTimeout: Duration = .seconds(2)

    /// What a message says.
    public enum Body: Sendable, Equatable {
        /// Client engine → server engine.
        case negotiate(NegotiationRequest)
        /// Server engine → client engine: an instance listens on `virtualPort`.
        case ack(inReplyTo: String, virtualPort: UInt16)
        /// Server engine → client engine: no instance (or any other refusal).
        case nak(inReplyTo: String, reason: String)

        /// The body's "type" field.
        public var type: String {
            switch self {
            case .negotiate: "negotiate"
            case .ack: "ack"
            case .nak: "nak"
            }
        }
    }

    /// One decoded message: the fields every body carries, and the rest.
    public struct Envelope: Sendable, Equatable {
        public var version: Int
        /// 32 lowercase hex digits: 16 random bytes, fresh for every message.
        public var nonce: String
        /// The sender's clock, milliseconds since the Unix epoch.
        public var timestamp: Int64
        public var body: Body

        public init(version: Int = NegotiationMessage.version, nonce: String, timestamp: Int64, body: Body) {
            self.version = version
            self.nonce = nonce
            self.timestamp = timestamp
            self.body = body
        }
    }

    /// The complete line for `envelope`, "\n" included. The caller checks the length
    /// against `maximumLineLength` when the strings in the body are not its own.
    public static func encode(_ envelope: Envelope, key: SymmetricKey) -> [UInt8] {
        let json = Array(jsonBody(envelope).utf8)
        var line = Array("\(magic) ".utf8)
        line.append(contentsOf: Array(Data(json).base64EncodedString().utf8))
        let mac = HMAC<SHA256>.authenticationCode(for: line, using: key)
        line.append(UInt8(ascii: " "))
        line.append(contentsOf: hex(Array(mac)).utf8)
        line.append(UInt8(ascii: "\n"))
        return line
    }

    /// Decodes and authenticates one line, "\n" included. Checks, in order: length and
    /// framing, then the MAC, then base64, JSON and every field. Does not check the
    /// version, the timestamp or the nonce against a cache: that is the receiver's policy.
    public static func decode(_ line: [UInt8], key: SymmetricKey) throws(NegotiationMessageError) -> Envelope {
        let signed = try authenticatedPart(of: line, key: key)
        let encoded = signed[(magic.utf8.count + 1)...]
        guard let json = decodeBase64(encoded) else {
            throw .malformed("the body is not standard padded base64")
        }
        return try decodeBody(json)
    }

    /// 16 bytes from the system's cryptographic random source, as 32 lowercase hex digits.
    public static func makeNonce() -> String {
        var generator = SystemRandomNumberGenerator()
        return hex((0..<16).map { _ in UInt8.random(in: .min ... .max, using: &generator) })
    }

    /// The wall clock in milliseconds since the Unix epoch.
    public static func currentTimestamp() -> Int64 {
        Int64((Date().timeIntervalSince1970 * 1000).rounded(.down))
    }

    // MARK: - Framing and MAC

    private static let space = UInt8(ascii: " ")
    private static let newline = UInt8(ascii: "\n")
    private static let macHexLength = 64

    /// Checks the framing and the MAC; returns "VPM1 <base64>".
    private static func authenticatedPart(of line: [UInt8], key: SymmetricKey) throws(NegotiationMessageError) -> ArraySlice<UInt8> {
        guard line.count <= maximumLineLength else {
            throw .malformed("the line is longer than \(maximumLineLength) bytes")
        }
        guard line.last == newline else { throw .malformed("the line is truncated (no newline)") }
        let content = line[..<(line.endIndex - 1)]
        let prefix = Array("\(magic) ".utf8)
        guard content.starts(with: prefix) else { throw .malformed("the line does not start with \"\(magic) \"") }
        guard let lastSpace = content.lastIndex(of: space), lastSpace >= prefix.count else {
            throw .malformed("the line has no MAC field")
        }
        let signed = content[..<lastSpace]
        guard !signed[prefix.count...].contains(space) else { throw .malformed("the line has more than three fields") }
        let macText = content[(lastSpace + 1)...]
        guard macText.count == macHexLength, let mac = bytes(fromLowercaseHex: macText) else {
            throw .malformed("the MAC is not \(macHexLength) lowercase hex digits")
        }
        guard HMAC<SHA256>.isValidAuthenticationCode(mac, authenticating: signed, using: key) else {
            throw .forged
        }
        return signed
    }

    /// Strict base64: the standard alphabet, padded, canonical (what `encode` produces).
    private static func decodeBase64(_ text: ArraySlice<UInt8>) -> Data? {
        guard !text.isEmpty, text.count % 4 == 0 else { return nil }
        for byte in text {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "+"), UInt8(ascii: "/"), UInt8(ascii: "="):
                continue
            default:
                return nil
            }
        }
        let string = String(decoding: text, as: UTF8.self)
        guard let data = Data(base64Encoded: string), data.base64EncodedString() == string else { return nil }
        return data
    }

    // MARK: - Hex

    private static let hexDigits = Array("0123456789abcdef".utf8)

    static func hex(_ bytes: [UInt8]) -> String {
        var text = [UInt8]()
        text.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            text.append(hexDigits[Int(byte >> 4)])
            text.append(hexDigits[Int(byte & 0x0F)])
        }
        return String(decoding: text, as: UTF8.self)
    }

    static func bytes(fromLowercaseHex text: some Collection<UInt8>) -> [UInt8]? {
        guard text.count % 2 == 0 else { return nil }
        var result = [UInt8]()
        result.reserveCapacity(text.count / 2)
        var high: UInt8?
        for character in text {
            let nibble: UInt8
            switch character {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): nibble = character - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): nibble = character - UInt8(ascii: "a") + 10
            default: return nil
            }
            if let first = high {
                result.append(first << 4 | nibble)
                high = nil
            } else {
                high = nibble
            }
        }
        return result
    }

    static func isNonce(_ text: String) -> Bool {
        text.utf8.count == 32 && bytes(fromLowercaseHex: text.utf8) != nil
    }
}
