public import Crypto
import Foundation
import Policy
#if canImport(Glibc)
import Glibc
#endif

/// An engine's own X25519 key pair. Its public half is published in the directory; two
/// engines derive the negotiation key they share (HMAC-SHA256, docs/negotiation.md) from their
/// own private key and the other's public key, so no secret is ever written to etcd or copied
/// between hosts.
public struct FleetKey: Sendable {
    /// The private key's 32 bytes (swift-crypto's key type is not Sendable).
    private let privateBytes: Data

    public init(privateKey: Curve25519.KeyAgreement.PrivateKey = .init()) {
        privateBytes = privateKey.rawRepresentation
    }

    public var privateKey: Curve25519.KeyAgreement.PrivateKey {
        // The bytes came from a valid key.
        try! Curve25519.KeyAgreement.PrivateKey(rawRepresentation: privateBytes)
    }

    /// The public key as the directory holds it: 32 bytes, base64.
    public var publicKeyText: String { privateKey.publicKey.rawRepresentation.base64EncodedString() }

    /// The pairwise negotiation key with the engine whose public key is `peerText`:
    /// HKDF-SHA256 over the X25519 shared secret, salted with the protocol's name, bound to both
    /// public keys (in byte order, so both engines compute the same key). Nil for text that is
    /// not a public key, or one whose shared secret would be all zeros (a low-order point).
    public func negotiationKey(peer peerText: String) -> SymmetricKey? {
        guard let bytes = Data(base64Encoded: peerText), bytes.count == 32,
              let peer = try? Curve25519.KeyAgreement.PublicKey(rawRepresentation: bytes),
              let secret = try? privateKey.sharedSecretFromKeyAgreement(with: peer),
              // A low-order point gives an all-zero secret that anyone can compute
              // (RFC 7748 §6.1); BoringSSL's build of swift-crypto does not refuse it.
              !secret.withUnsafeBytes({ $0.allSatisfy { $0 == 0 } }) else { return nil }
        let own = privateKey.publicKey.rawRepresentation
        let keys = own.lexicographicallyPrecedes(bytes) ? own + bytes : bytes + own
        return secret.hkdfDerivedSymmetricKey(using: SHA256.self, salt: Data(Self.salt.utf8), sharedInfo: keys, outputByteCount: 32)
    }

    static let salt = "vpm fleet negotiation key v1"

    /// Reads the key at `path` (64 hex digits), or creates one there (mode 0600, its folder
    /// 0700 if new). A key file that others can read is refused: it is the engine's identity.
    public static func load(path: String) throws(FleetKeyError) -> FleetKey {
        if let text = try? String(contentsOfFile: path, encoding: .utf8) {
            var status = stat()
            if stat(path, &status) == 0, status.st_mode & 0o077 != 0 {
                throw FleetKeyError("\(path) holds this engine's fleet key and other users can read or change it (mode \(String(status.st_mode & 0o777, radix: 8))): chmod 600 \(path)")
            }
            let digits = text.trimmingCharacters(in: .whitespacesAndNewlines)
            guard let bytes = Hex.bytes(digits), bytes.count == 32,
                  let key = try? Curve25519.KeyAgreement.PrivateKey(rawRepresentation: bytes) else {
                throw FleetKeyError("\(path) is not a fleet key (64 hex digits): move it away and the engine makes a new one, or write one with `openssl rand -hex 32 > \(path)`")
            }
            return FleetKey(privateKey: key)
        }
        // There but not readable (its owner or mode, or not text): not a reason for a new identity.
        if access(path, F_OK) == 0 {
            throw FleetKeyError("cannot read the fleet key \(path): \(access(path, R_OK) == 0 ? "it is not text" : String(cString: strerror(errno))) (it must be root's, mode 600, 64 hex digits)")
        }
        let key = FleetKey()
        let folder = (path as NSString).deletingLastPathComponent
        do {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw FleetKeyError("cannot create \(folder) for the fleet key: \(error.localizedDescription) (change fleet: key-file)")
        }
        try key.write(to: path, exclusive: true)
        return key
    }

    /// Writes the key to `path`, mode 0600, as one rename: a crash leaves the old key or the
    /// new one, never half of one. `exclusive`: `path` must not exist yet.
    public func write(to path: String, exclusive: Bool = false) throws(FleetKeyError) {
        let hex = privateBytes.map { String(format: "%02x", $0) }.joined() + "\n"
        let staging = exclusive ? path : path + ".new"
        let descriptor = open(staging, O_WRONLY | O_CREAT | (exclusive ? O_EXCL : O_TRUNC), 0o600)
        guard descriptor >= 0 else {
            throw FleetKeyError("cannot create the fleet key \(staging): \(String(cString: strerror(errno))) (change fleet: key-file)")
        }
        defer { close(descriptor) }
        let written = hex.utf8CString.withUnsafeBufferPointer { Glibc.write(descriptor, $0.baseAddress, hex.utf8.count) }
        guard written == hex.utf8.count, fchmod(descriptor, 0o600) == 0, fsync(descriptor) == 0,
              exclusive || rename(staging, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(staging)
            throw FleetKeyError("cannot write the fleet key \(path): \(reason)")
        }
    }
}

public struct FleetKeyError: Error, CustomStringConvertible, Sendable {
    public var description: String
    init(_ description: String) { self.description = description }
}
