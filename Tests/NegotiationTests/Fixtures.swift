import Crypto
import Foundation
@testable import Negotiation

/// Fixed key, nonces and timestamps, and the lines they make. The expected lines were
/// computed independently (Python's hmac and base64 modules), not by the code under test.
enum Fixtures {
    static var key: SymmetricKey { SymmetricKey(data: Array("vpm-negotiation-test-key-32bytes".utf8)) }
    static var otherKey: SymmetricKey { SymmetricKey(data: Array("another-key-of-thirty-two-bytes!".utf8)) }
    static let requestNonce = "00112233445566778899aabbccddeeff"
    static let timestamp: Int64 = 1_767_225_600_000  // 2026-01-01T00:00:00Z

    static let request = NegotiationRequest(aid: "acme", client: "198.18.0.2", clientPort: 40000,
                                            server: "198.18.0.1", initialPort: 9000, transport: "tcp")
    static let requestEnvelope = NegotiationMessage.Envelope(nonce: requestNonce, timestamp: timestamp, body: .negotiate(request))

    static let requestJSON = #"{"version":1,"type":"negotiate","nonce":"00112233445566778899aabbccddeeff","timestamp":1767225600000,"aid":"acme","client":"198.18.0.2","clientPort":40000,"server":"198.18.0.1","initialPort":9000,"transport":"tcp"}"#
    static let requestLine = "VPM1 eyJ2ZXJzaW9uIjoxLCJ0eXBlIjoibmVnb3RpYXRlIiwibm9uY2UiOiIwMDExMjIzMzQ0NTU2Njc3ODg5OWFhYmJjY2RkZWVmZiIsInRpbWVzdGFtcCI6MTc2NzIyNTYwMDAwMCwiYWlkIjoiYWNtZSIsImNsaWVudCI6IjE5OC4xOC4wLjIiLCJjbGllbnRQb3J0Ijo0MDAwMCwic2VydmVyIjoiMTk4LjE4LjAuMSIsImluaXRpYWxQb3J0Ijo5MDAwLCJ0cmFuc3BvcnQiOiJ0Y3AifQ== 5e6e1a179027b4537fcbb20de131b74aee490300f3e72fa38ca5dadfc086fba3\n"

    static let ackEnvelope = NegotiationMessage.Envelope(nonce: "ffeeddccbbaa99887766554433221100", timestamp: timestamp + 250,
                                                         body: .ack(inReplyTo: requestNonce, virtualPort: 20017))
    static let ackLine = "VPM1 eyJ2ZXJzaW9uIjoxLCJ0eXBlIjoiYWNrIiwibm9uY2UiOiJmZmVlZGRjY2JiYWE5OTg4Nzc2NjU1NDQzMzIyMTEwMCIsInRpbWVzdGFtcCI6MTc2NzIyNTYwMDI1MCwiaW5SZXBseVRvIjoiMDAxMTIyMzM0NDU1NjY3Nzg4OTlhYWJiY2NkZGVlZmYiLCJ2aXJ0dWFsUG9ydCI6MjAwMTd9 9446de84469488040cda20d570ffcbcdddcefba18b6fbe2a8695c45a8453fab5\n"

    static let nakEnvelope = NegotiationMessage.Envelope(nonce: "0f1e2d3c4b5a69788796a5b4c3d2e1f0", timestamp: timestamp + 250,
                                                         body: .nak(inReplyTo: requestNonce, reason: #"no instance of AID "acme" listens on 9000/tcp"#))
    static let nakLine = "VPM1 eyJ2ZXJzaW9uIjoxLCJ0eXBlIjoibmFrIiwibm9uY2UiOiIwZjFlMmQzYzRiNWE2OTc4ODc5NmE1YjRjM2QyZTFmMCIsInRpbWVzdGFtcCI6MTc2NzIyNTYwMDI1MCwiaW5SZXBseVRvIjoiMDAxMTIyMzM0NDU1NjY3Nzg4OTlhYWJiY2NkZGVlZmYiLCJyZWFzb24iOiJubyBpbnN0YW5jZSBvZiBBSUQgXCJhY21lXCIgbGlzdGVucyBvbiA5MDAwL3RjcCJ9 921c13b5f129686ad4f683feb0e0f7ded310cadafdd27700b1abeeafddb4a9d4\n"

    /// A correctly framed and signed line around any body bytes (valid JSON or not).
    static func signedLine(body: [UInt8], key: SymmetricKey = key) -> [UInt8] {
        signedLine(base64: Data(body).base64EncodedString(), key: key)
    }

    static func signedLine(json: String, key: SymmetricKey = key) -> [UInt8] {
        signedLine(body: Array(json.utf8), key: key)
    }

    /// A correctly signed line around any text in the base64 position.
    static func signedLine(base64: String, key: SymmetricKey = key) -> [UInt8] {
        let signed = Array("VPM1 \(base64)".utf8)
        let mac = HMAC<SHA256>.authenticationCode(for: signed, using: key)
        return signed + Array(" \(NegotiationMessage.hex(Array(mac)))\n".utf8)
    }

    /// The request JSON with `fields` replaced (a nil value removes the field).
    static func requestJSON(replacing fields: [String: String?]) -> String {
        var pairs: [(String, String)] = [
            ("version", "1"), ("type", #""negotiate""#), ("nonce", "\"\(requestNonce)\""), ("timestamp", String(timestamp)),
            ("aid", #""acme""#), ("client", #""198.18.0.2""#), ("clientPort", "40000"), ("server", #""198.18.0.1""#),
            ("initialPort", "9000"), ("transport", #""tcp""#),
        ]
        for (name, value) in fields {
            if let index = pairs.firstIndex(where: { $0.0 == name }) {
                if let value { pairs[index].1 = value } else { pairs.remove(at: index) }
            } else if let value {
                pairs.append((name, value))
            }
        }
        return "{" + pairs.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}"
    }

    static let requestFieldNames = ["version", "type", "nonce", "timestamp", "aid", "client", "clientPort", "server", "initialPort", "transport"]
}

extension NegotiationMessageError {
    var isMalformed: Bool {
        if case .malformed = self { return true }
        return false
    }
}

/// The error `decode` throws for `line`, or nil when it decodes.
func decodeError(_ line: [UInt8], key: SymmetricKey = Fixtures.key) -> NegotiationMessageError? {
    do {
        _ = try NegotiationMessage.decode(line, key: key)
        return nil
    } catch {
        return error
    }
}
