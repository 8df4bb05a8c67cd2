import Packet

/// The network part of a prefix length as masks over the two 64-bit halves of an
/// `IPAddress`, so matching is four AND/compare operations and never allocates.
struct AddressMask: Hashable, Sendable {
    let high: UInt64
    let low: UInt64

    /// `length` in 0...128 over the 16-byte form (IPv4 lengths are 96 + n).
    init(length: Int) {
        precondition((0...128).contains(length), "prefix length \(length) outside 0...128")
        // Swift's `<<` yields 0 when shifting by the full width, which gives /0 and /64 for free.
        high = length >= 64 ? .max : ~UInt64(0) << UInt64(64 - length)
        low = length <= 64 ? 0 : ~UInt64(0) << UInt64(128 - length)
    }

    /// `address` with its host bits cleared.
    func network(of address: IPAddress) -> IPAddress {
        IPAddress(high: address.high & high, low: address.low & low)
    }

    func sameNetwork(_ first: IPAddress, _ second: IPAddress) -> Bool {
        (first.high ^ second.high) & high == 0 && (first.low ^ second.low) & low == 0
    }
}
