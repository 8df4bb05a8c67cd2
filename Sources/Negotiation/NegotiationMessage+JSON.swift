import Foundation

// The JSON body: written by hand so the bytes (and the fixtures in the tests) are fixed,
// read with JSONDecoder into the fields the body's type needs.
extension NegotiationMessage {
    static func jsonBody(_ envelope: Envelope) -> String {
        var fields: [(String, String)] = [
            ("version", String(envelope.version)),
            ("type", quoted(envelope.body.type)),
            ("nonce", quoted(envelope.nonce)),
            ("timestamp", String(envelope.timestamp)),
        ]
        switch envelope.body {
        case .negotiate(let request):
            fields += [
                ("aid", quoted(request.aid)),
                ("client", quoted(request.client)),
                ("clientPort", String(request.clientPort)),
                ("server", quoted(request.server)),
                ("initialPort", String(request.initialPort)),
                ("transport", quoted(request.transport)),
            ]
        case .ack(let inReplyTo, let virtualPort):
            fields += [("inReplyTo", quoted(inReplyTo)), ("virtualPort", String(virtualPort))]
        case .nak(let inReplyTo, let reason):
            fields += [("inReplyTo", quoted(inReplyTo)), ("reason", quoted(reason))]
        }
        return "{" + fields.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}"
    }

    /// A JSON string literal (RFC 8259): quote, backslash and control characters escaped,
    /// everything else as UTF-8.
    static func quoted(_ text: String) -> String {
        var result = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": result += "\\\""
            case "\\": result += "\\\\"
            case "\n": result += "\\n"
            case "\r": result += "\\r"
            case "\t": result += "\\t"
            case _ where scalar.value < 0x20:
                let digits = String(scalar.value, radix: 16)
                result += "\\u" + String(repeating: "0", count: 4 - digits.count) + digits
            default: result.unicodeScalars.append(scalar)
            }
        }
        return result + "\""
    }

    static func decodeBody(_ json: Data) throws(NegotiationMessageError) -> Envelope {
        let wire: WireEnvelope
        do {
            wire = try JSONDecoder().decode(WireEnvelope.self, from: json)
        } catch let error as NegotiationMessageError {
            throw error
        } catch let error as DecodingError {
            throw .malformed(describe(error))
        } catch {
            throw .malformed("the body is not JSON")
        }
        let envelope = wire.envelope
        guard isNonce(envelope.nonce) else { throw .malformed("field \"nonce\" is not 32 lowercase hex digits") }
        switch envelope.body {
        case .negotiate(let request):
            guard request.clientPort != 0 else { throw .malformed("field \"clientPort\" is 0") }
            guard request.initialPort != 0 else { throw .malformed("field \"initialPort\" is 0") }
        case .ack(let inReplyTo, let virtualPort):
            guard isNonce(inReplyTo) else { throw .malformed("field \"inReplyTo\" is not 32 lowercase hex digits") }
            guard virtualPort != 0 else { throw .malformed("field \"virtualPort\" is 0") }
        case .nak(let inReplyTo, _):
            guard isNonce(inReplyTo) else { throw .malformed("field \"inReplyTo\" is not 32 lowercase hex digits") }
        }
        return envelope
    }

    private static func describe(_ error: DecodingError) -> String {
        func field(_ path: [any CodingKey]) -> String {
            path.last.map { "field \"\($0.stringValue)\"" } ?? "the body"
        }
        switch error {
        case .keyNotFound(let key, _): return "missing field \"\(key.stringValue)\""
        case .valueNotFound(_, let context): return "\(field(context.codingPath)) is null"
        case .typeMismatch(_, let context): return "\(field(context.codingPath)) has the wrong type"
        case .dataCorrupted(let context):
            return context.codingPath.isEmpty ? "the body is not a JSON object" : "\(field(context.codingPath)) is out of range"
        @unknown default: return "the body is not valid"
        }
    }
}

/// The body as JSON: the common fields, then those of its type. Unknown fields are ignored.
private struct WireEnvelope: Decodable {
    var envelope: NegotiationMessage.Envelope

    private enum Key: String, CodingKey {
        case version, type, nonce, timestamp
        case aid, client, clientPort, server, initialPort, transport
        case inReplyTo, virtualPort, reason
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: Key.self)
        let version = try container.decode(Int.self, forKey: .version)
        let type = try container.decode(String.self, forKey: .type)
        let nonce = try container.decode(String.self, forKey: .nonce)
        let timestamp = try container.decode(Int64.self, forKey: .timestamp)
        let body: NegotiationMessage.Body
        switch type {
        case "negotiate":
            body = .negotiate(NegotiationRequest(
                aid: try container.decode(String.self, forKey: .aid),
                client: try container.decode(String.self, forKey: .client),
                clientPort: try container.decode(UInt16.self, forKey: .clientPort),
                server: try container.decode(String.self, forKey: .server),
                initialPort: try container.decode(UInt16.self, forKey: .initialPort),
                transport: try container.decode(String.self, forKey: .transport)
            ))
        case "ack":
            body = .ack(inReplyTo: try container.decode(String.self, forKey: .inReplyTo),
                        virtualPort: try container.decode(UInt16.self, forKey: .virtualPort))
        case "nak":
            body = .nak(inReplyTo: try container.decode(String.self, forKey: .inReplyTo),
                        reason: try container.decode(String.self, forKey: .reason))
        default:
            throw NegotiationMessageError.malformed("unknown type \(NegotiationMessage.quoted(type))")
        }
        envelope = NegotiationMessage.Envelope(version: version, nonce: nonce, timestamp: timestamp, body: body)
    }
}
