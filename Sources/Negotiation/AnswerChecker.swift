import Crypto

/// Verifies the answer line against the request it answers.
struct AnswerChecker: Sendable {
    let sharedKey: SharedKey
    var key: SymmetricKey { sharedKey.key }
    let requestNonce: String
    let endpoint: String
    let clock: @Sendable () -> Int64

    func check(_ line: [UInt8]) -> (NegotiationAnswer, NegotiationClient.Outcome) {
        func bad(_ detail: String) -> (NegotiationAnswer, NegotiationClient.Outcome) {
            (.failed(reason: "bad answer from negotiation peer \(endpoint): \(detail)"), .badAnswer)
        }
        let envelope: NegotiationMessage.Envelope
        do {
            envelope = try NegotiationMessage.decode(line, key: key)
        } catch {
            return bad("\(error)")
        }
        guard envelope.version == NegotiationMessage.version else {
            return bad("version \(envelope.version), expected \(NegotiationMessage.version)")
        }
        let now = clock()
        let tolerance = NegotiationMessage.timestampToleranceMilliseconds
        guard envelope.timestamp >= now - tolerance, envelope.timestamp <= now + tolerance else {
            return bad("timestamp \(envelope.timestamp) is more than \(tolerance) ms from ours (\(now)): are both clocks synchronised?")
        }
        switch envelope.body {
        case .negotiate:
            return bad("type \"negotiate\", expected \"ack\" or \"nak\"")
        case .ack(let inReplyTo, _), .nak(let inReplyTo, _):
            guard inReplyTo == requestNonce else { return bad("it answers nonce \(inReplyTo), not \(requestNonce)") }
        }
        switch envelope.body {
        case .ack(_, let virtualPort): return (.accepted(virtualPort: virtualPort), .accepted)
        case .nak(_, let reason): return (.refused(reason: reason), .refused)
        case .negotiate: return bad("unreachable")
        }
    }
}

/// A `SymmetricKey` that may cross threads. The key is an immutable value; swift-crypto
/// 3.x does not declare it `Sendable` on Linux.
struct SharedKey: @unchecked Sendable {
    let key: SymmetricKey

    init(_ key: SymmetricKey) {
        self.key = key
    }
}
