import Crypto
import Fleet
import Foundation
import XCTest

final class FleetKeyTests: XCTestCase {
    func testTwoEnginesDeriveTheSameKeyAndAThirdAnother() throws {
        let one = FleetKey(), two = FleetKey(), three = FleetKey()
        let oneTwo = try XCTUnwrap(one.negotiationKey(peer: two.publicKeyText))
        let twoOne = try XCTUnwrap(two.negotiationKey(peer: one.publicKeyText))
        XCTAssertEqual(oneTwo.withUnsafeBytes { Data($0) }, twoOne.withUnsafeBytes { Data($0) })
        XCTAssertEqual(oneTwo.bitCount, 256)
        let oneThree = try XCTUnwrap(one.negotiationKey(peer: three.publicKeyText))
        XCTAssertNotEqual(oneTwo.withUnsafeBytes { Data($0) }, oneThree.withUnsafeBytes { Data($0) })
    }

    /// RFC 7748 §6.1's key pairs: the derivation is X25519, then HKDF-SHA256 salted with the
    /// protocol's name over both public keys in byte order — fixed bytes, so a second
    /// implementation can check itself against these.
    func testTheDerivationOfRFC7748sKeyPairs() throws {
        let alice = FleetKey(privateKey: try .init(rawRepresentation: hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")))
        let bob = FleetKey(privateKey: try .init(rawRepresentation: hex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")))
        XCTAssertEqual(alice.publicKeyText, Data(hex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")).base64EncodedString())
        let derived = try XCTUnwrap(alice.negotiationKey(peer: bob.publicKeyText)).withUnsafeBytes { Data($0) }
        // Expected: HKDF-SHA256(IKM = 4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742,
        // salt = "vpm fleet negotiation key v1", info = alice's public key . bob's, L = 32).
        let secret = SymmetricKey(data: hex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"))
        let info = hex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a") + hex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
        let expected = HKDF<SHA256>.deriveKey(inputKeyMaterial: secret, salt: Data("vpm fleet negotiation key v1".utf8), info: info, outputByteCount: 32)
        XCTAssertEqual(derived, expected.withUnsafeBytes { Data($0) })
    }

    func testTextThatIsNotAPublicKeyDerivesNothing() {
        let key = FleetKey()
        XCTAssertNil(key.negotiationKey(peer: "not base64"))
        XCTAssertNil(key.negotiationKey(peer: Data(repeating: 1, count: 31).base64EncodedString()))
        // The all-zero point has low order: its shared secret is all zeros, refused.
        XCTAssertNil(key.negotiationKey(peer: Data(repeating: 0, count: 32).base64EncodedString()))
    }

    func testTheKeyFileIsMadePrivateReadBackAndRefusedWhenOthersCanReadIt() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("vpm-fleet-key-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let path = folder + "/keys/fleet.key"
        let made = try FleetKey.load(path: path)
        let mode = try XCTUnwrap(FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int)
        XCTAssertEqual(mode, 0o600)
        XCTAssertEqual(try FleetKey.load(path: path).publicKeyText, made.publicKeyText)
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: path)
        XCTAssertThrowsError(try FleetKey.load(path: path)) { error in
            XCTAssertTrue("\(error)".contains("chmod 600"), "\(error)")
        }
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: path)
        try "not a key\n".write(toFile: path, atomically: false, encoding: .utf8)
        XCTAssertThrowsError(try FleetKey.load(path: path)) { error in
            XCTAssertTrue("\(error)".contains("is not a fleet key"), "\(error)")
        }
    }

    private func hex(_ text: String) -> Data {
        Data(stride(from: 0, to: text.count, by: 2).map { index in
            let start = text.index(text.startIndex, offsetBy: index)
            return UInt8(text[start..<text.index(start, offsetBy: 2)], radix: 16)!
        })
    }
}
