// libFuzzer harness for the negotiation channel's decoder, NegotiationMessage.decode(_:key:).
// Compiled together with the pure message files of Sources/Negotiation (not the NIO client and
// server) against swift-crypto (see Fuzz/run.sh).
//
// A random line never carries a valid HMAC, so fuzzing only raw lines would stop at the MAC
// check. The first input byte therefore picks what the rest is (byte % 3):
//   0  a raw line, decoded as it stands (framing, length and MAC checks; what anyone may send);
//   1  a body: the harness base64-encodes it and signs "VPM1 <base64>" with the key, so base64,
//      JSON and every field check run (what a peer holding the key may send);
//   2  the text in the base64 position: the harness signs "VPM1 <text>" (strict base64 decoding).
// The seed files start with the digit "0", "1" or "2" for that reason.
//
// Invariants: decode never traps or crashes (only returns or throws NegotiationMessageError);
// a decoded envelope, encoded again (when the line fits maximumLineLength), decodes to an equal
// envelope; and an envelope decoded from a line that `encode` would produce byte for byte
// re-encodes to exactly that line. The rest of the input is also tried as a hex key
// (NegotiationMessage.key(hex:)).

import Crypto
import Foundation

private let key = SymmetricKey(data: Array("vpm-negotiation-test-key-32bytes".utf8))

@_cdecl("LLVMFuzzerTestOneInput")
public func negotiationFuzzTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard size > 0, let data else { return 0 }
    let input = Array(UnsafeBufferPointer(start: data, count: size))
    let rest = Array(input.dropFirst())
    let line: [UInt8]
    switch input[0] % 3 {
    case 0:
        line = rest
    case 1:
        line = signed(base64: Array(Data(rest).base64EncodedString().utf8))
    default:
        line = signed(base64: rest)
    }
    check(line)
    // The same bytes as a configured key in hex: at least 64 hex digits, either case.
    if let configured = NegotiationMessage.key(hex: String(decoding: rest, as: UTF8.self)) {
        precondition(configured.bitCount >= 256 && configured.bitCount == rest.count * 4,
                     "key(hex:) accepted \(rest.count) characters as a \(configured.bitCount)-bit key")
    }
    return 0
}

/// "VPM1 <base64> <hex HMAC>\n" around any bytes in the base64 position.
private func signed(base64: [UInt8]) -> [UInt8] {
    let part = Array("\(NegotiationMessage.magic) ".utf8) + base64
    let mac = HMAC<SHA256>.authenticationCode(for: part, using: key)
    return part + Array(" \(NegotiationMessage.hex(Array(mac)))\n".utf8)
}

private func check(_ line: [UInt8]) {
    let envelope: NegotiationMessage.Envelope
    do {
        envelope = try NegotiationMessage.decode(line, key: key)
    } catch {
        _ = error.description
        return
    }
    // Every field the receiver reads.
    _ = envelope.body.type
    precondition(NegotiationMessage.isNonce(envelope.nonce), "decoded a message whose nonce is not 32 hex digits")

    let encoded = NegotiationMessage.encode(envelope, key: key)
    if encoded == line { return }
    // `encode` makes the same line for equal envelopes, so a line that re-encodes differently
    // came from a body `encode` would not write (other spacing, escapes, field order, ...).
    guard encoded.count <= NegotiationMessage.maximumLineLength else { return }
    let again: NegotiationMessage.Envelope
    do {
        again = try NegotiationMessage.decode(encoded, key: key)
    } catch {
        fatalError("""
            invariant violated: a decoded envelope, encoded again, does not decode: \(error)
            envelope: \(envelope)
            re-encoded: \(String(decoding: encoded, as: UTF8.self))
            """)
    }
    guard again == envelope else {
        fatalError("""
            invariant violated: encode/decode round trip differs
            first:  \(envelope)
            second: \(again)
            """)
    }
    // A second round trip is byte-stable.
    let twice = NegotiationMessage.encode(again, key: key)
    precondition(twice == encoded, "encode is not deterministic for equal envelopes")
}
