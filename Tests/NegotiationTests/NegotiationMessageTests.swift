import Crypto
import Foundation
@testable import Negotiation
import XCTest

/// The wire format, bytes in and bytes out: fixtures, then every way a line can be wrong.
final class NegotiationMessageTests: XCTestCase {
    // MARK: - Fixtures

    func testRequestEncodesToTheFixtureByteForByte() {
        XCTAssertEqual(NegotiationMessage.jsonBody(Fixtures.requestEnvelope), Fixtures.requestJSON)
        XCTAssertEqual(NegotiationMessage.encode(Fixtures.requestEnvelope, key: Fixtures.key), Array(Fixtures.requestLine.utf8))
    }

    func testAckAndNakEncodeToTheFixturesByteForByte() {
        XCTAssertEqual(NegotiationMessage.encode(Fixtures.ackEnvelope, key: Fixtures.key), Array(Fixtures.ackLine.utf8))
        XCTAssertEqual(NegotiationMessage.encode(Fixtures.nakEnvelope, key: Fixtures.key), Array(Fixtures.nakLine.utf8))
    }

    func testFixturesDecodeFieldByField() throws {
        let request = try NegotiationMessage.decode(Array(Fixtures.requestLine.utf8), key: Fixtures.key)
        XCTAssertEqual(request.version, 1)
        XCTAssertEqual(request.nonce, Fixtures.requestNonce)
        XCTAssertEqual(request.timestamp, 1_767_225_600_000)
        guard case .negotiate(let body) = request.body else { return XCTFail("\(request.body)") }
        XCTAssertEqual(body.aid, "acme")
        XCTAssertEqual(body.client, "198.18.0.2")
        XCTAssertEqual(body.clientPort, 40000)
        XCTAssertEqual(body.server, "198.18.0.1")
        XCTAssertEqual(body.initialPort, 9000)
        XCTAssertEqual(body.transport, "tcp")
        XCTAssertEqual(try NegotiationMessage.decode(Array(Fixtures.ackLine.utf8), key: Fixtures.key), Fixtures.ackEnvelope)
        XCTAssertEqual(try NegotiationMessage.decode(Array(Fixtures.nakLine.utf8), key: Fixtures.key), Fixtures.nakEnvelope)
    }

    func testStringsWithQuotesControlCharactersAndUnicodeRoundTrip() throws {
        let request = NegotiationRequest(aid: "a\"b\\c\n\t\u{01}é→🙂", client: "2001:db8::2", clientPort: 1,
                                         server: "2001:db8::1", initialPort: 65535, transport: "udp")
        let envelope = NegotiationMessage.Envelope(nonce: NegotiationMessage.makeNonce(), timestamp: -5, body: .negotiate(request))
        let line = NegotiationMessage.encode(envelope, key: Fixtures.key)
        XCTAssertEqual(try NegotiationMessage.decode(line, key: Fixtures.key), envelope)
        XCTAssertTrue(NegotiationMessage.jsonBody(envelope).contains(#""aid":"a\"b\\c\n\t\u0001é→🙂""#))
    }

    func testUnknownFieldsAreIgnored() throws {
        let line = Fixtures.signedLine(json: Fixtures.requestJSON(replacing: ["future": #"{"x":[1,2]}"#]))
        XCTAssertEqual(try NegotiationMessage.decode(line, key: Fixtures.key), Fixtures.requestEnvelope)
    }

    func testNoncesAreFreshHex() {
        let nonces = (0..<1000).map { _ in NegotiationMessage.makeNonce() }
        XCTAssertEqual(Set(nonces).count, 1000)
        XCTAssertTrue(nonces.allSatisfy(NegotiationMessage.isNonce))
    }

    func testKeyFromHex() {
        let hex = String(repeating: "0123456789ABCDEF", count: 4)
        XCTAssertEqual(NegotiationMessage.key(hex: hex)?.bitCount, 256)
        XCTAssertNil(NegotiationMessage.key(hex: String(hex.dropLast(2))), "shorter than 32 bytes")
        XCTAssertNil(NegotiationMessage.key(hex: String(hex.dropLast()) + "g"))
    }

    // MARK: - Malformed

    func testEveryTruncationOfAValidLineIsMalformed() {
        for line in [Fixtures.requestLine, Fixtures.ackLine, Fixtures.nakLine].map({ Array($0.utf8) }) {
            for length in 0..<line.count {
                let cut = Array(line[0..<length])
                XCTAssertEqual(decodeError(cut)?.isMalformed, true, "cut at \(length)")
                // The same prefix closed with a newline, as if the rest were lost.
                if length < line.count - 1 {
                    XCTAssertEqual(decodeError(cut + [UInt8(ascii: "\n")])?.isMalformed, true, "cut at \(length) plus newline")
                }
            }
        }
    }

    func testFramingErrorsAreMalformed() {
        let valid = Fixtures.requestLine
        let variants: [String: String] = [
            "wrong magic": "VPM2" + valid.dropFirst(4),
            "lowercase magic": "vpm1" + valid.dropFirst(4),
            "no space after magic": "VPM1" + valid.dropFirst(5),
            "two spaces after magic": "VPM1  " + valid.dropFirst(5),
            "CRLF": valid.dropLast() + "\r\n",
            "uppercase MAC": String(valid.dropLast(65)) + valid.suffix(65).uppercased(),
            "MAC one digit short": valid.dropLast(2) + "\n",
            "MAC one digit long": valid.dropLast() + "0\n",
            "trailing space": valid.dropLast() + " \n",
            "empty line": "\n",
        ]
        for (name, line) in variants {
            XCTAssertEqual(decodeError(Array(line.utf8))?.isMalformed, true, name)
        }
    }

    func testBadBase64IsMalformedEvenWhenSigned() {
        for base64 in ["", "@@@@", "eyJ2", "eyJ2ZXJzaW9uIjox", "eyJ2ZXJzaW9uIjoxfQ", "eyJ2ZXJz aW9uIjoxfQ==", "eR==", "e===", "eyJ2ZXJzaW9uIjoxfQ==AAAA", "eyJ-ZXJzaW9uIjoxfQ=="] {
            XCTAssertEqual(decodeError(Fixtures.signedLine(base64: base64))?.isMalformed, true, base64)
        }
    }

    func testBadJSONIsMalformedEvenWhenSigned() {
        for json in ["{", "not json", "[]", "\"negotiate\"", "1", "null", "{}", "{\"version\":1,}", Fixtures.requestJSON + "x"] {
            XCTAssertEqual(decodeError(Fixtures.signedLine(json: json))?.isMalformed, true, json)
        }
        XCTAssertEqual(decodeError(Fixtures.signedLine(body: [0xFF, 0xFE, 0x7B, 0x7D]))?.isMalformed, true, "not UTF-8")
    }

    func testEveryMissingFieldIsMalformedAndNamed() {
        for name in Fixtures.requestFieldNames {
            let error = decodeError(Fixtures.signedLine(json: Fixtures.requestJSON(replacing: [name: nil])))
            XCTAssertEqual(error, .malformed("missing field \"\(name)\""), name)
        }
        for name in ["inReplyTo", "virtualPort"] {
            let json = #"{"version":1,"type":"ack","nonce":"\#(Fixtures.requestNonce)","timestamp":1,"# +
                (name == "inReplyTo" ? #""virtualPort":20017}"# : #""inReplyTo":"\#(Fixtures.requestNonce)"}"#)
            XCTAssertEqual(decodeError(Fixtures.signedLine(json: json)), .malformed("missing field \"\(name)\""), name)
        }
        let nak = #"{"version":1,"type":"nak","nonce":"\#(Fixtures.requestNonce)","timestamp":1,"inReplyTo":"\#(Fixtures.requestNonce)"}"#
        XCTAssertEqual(decodeError(Fixtures.signedLine(json: nak)), .malformed("missing field \"reason\""))
    }

    func testMistypedAndOutOfRangeFieldsAreMalformed() {
        let variants: [String: String] = [
            "version": #""1""#, "type": "7", "nonce": "16", "timestamp": #""now""#, "aid": "null", "client": "[]",
            "clientPort": "70000", "initialPort": "-1", "server": "true", "transport": "{}",
        ]
        for (name, value) in variants {
            XCTAssertEqual(decodeError(Fixtures.signedLine(json: Fixtures.requestJSON(replacing: [name: value])))?.isMalformed, true, "\(name): \(value)")
        }
        let invalid: [String: String] = [
            "nonce": #""00112233445566778899AABBCCDDEEFF""#, "clientPort": "0", "initialPort": "0",
            "type": #""hello""#,
        ]
        for (name, value) in invalid {
            XCTAssertEqual(decodeError(Fixtures.signedLine(json: Fixtures.requestJSON(replacing: [name: value])))?.isMalformed, true, "\(name): \(value)")
        }
        let zeroPort = #"{"version":1,"type":"ack","nonce":"\#(Fixtures.requestNonce)","timestamp":1,"inReplyTo":"\#(Fixtures.requestNonce)","virtualPort":0}"#
        XCTAssertEqual(decodeError(Fixtures.signedLine(json: zeroPort))?.isMalformed, true)
    }

    func testAnotherVersionDecodesSoTheReceiverCanCountIt() throws {
        let line = Fixtures.signedLine(json: Fixtures.requestJSON(replacing: ["version": "2"]))
        XCTAssertEqual(try NegotiationMessage.decode(line, key: Fixtures.key).version, 2)
    }

    func testOverlongLinesAreMalformed() {
        let overhead = Fixtures.signedLine(json: Fixtures.requestJSON(replacing: ["aid": #""""#])).count
        // Base64 grows in steps of 4, so the longest line that fits is 4095 bytes.
        let fits = (4095 - overhead) / 4 * 3
        let longest = Fixtures.signedLine(json: Fixtures.requestJSON(replacing: ["aid": "\"\(String(repeating: "a", count: fits))\""]))
        XCTAssertEqual(longest.count, 4095)
        XCTAssertNil(decodeError(longest))
        let tooLong = Fixtures.signedLine(json: Fixtures.requestJSON(replacing: ["aid": "\"\(String(repeating: "a", count: fits + 1))\""]))
        XCTAssertGreaterThan(tooLong.count, 4096)
        XCTAssertEqual(decodeError(tooLong), .malformed("the line is longer than 4096 bytes"))
    }

    // MARK: - Forged

    func testWrongKeyIsForged() {
        XCTAssertEqual(decodeError(Array(Fixtures.requestLine.utf8), key: Fixtures.otherKey), .forged)
        XCTAssertEqual(decodeError(Array(Fixtures.ackLine.utf8), key: Fixtures.otherKey), .forged)
    }

    func testFlippedBodyByteIsForged() {
        let line = Array(Fixtures.requestLine.utf8)
        for index in [5, 40, 100, 200, line.count - 68] {
            var flipped = line
            flipped[index] = flipped[index] == UInt8(ascii: "A") ? UInt8(ascii: "B") : UInt8(ascii: "A")
            XCTAssertEqual(decodeError(flipped), .forged, "byte \(index)")
        }
    }

    func testFlippedMACDigitIsForged() {
        let line = Array(Fixtures.requestLine.utf8)
        for index in (line.count - 65)..<(line.count - 1) {
            var flipped = line
            flipped[index] = flipped[index] == UInt8(ascii: "0") ? UInt8(ascii: "1") : UInt8(ascii: "0")
            XCTAssertEqual(decodeError(flipped), .forged, "byte \(index)")
        }
    }

    func testTheMACIsCheckedBeforeTheBodyIsDecoded() {
        // Garbage in the base64 position with a wrong MAC: forged, never parsed.
        XCTAssertEqual(decodeError(Fixtures.signedLine(base64: "@@@@", key: Fixtures.otherKey)), .forged)
    }
}
