public import Crypto

extension NegotiationMessage {
    /// A shared key written as hex (as a configuration file would hold it): at least 32
    /// bytes (64 hex digits, either case). Nil for anything else.
    public static func key(hex text: String) -> SymmetricKey? {
        guard text.utf8.count >= 64, let bytes = bytes(fromLowercaseHex: text.lowercased().utf8) else { return nil }
        return SymmetricKey(data: bytes)
    }
}
