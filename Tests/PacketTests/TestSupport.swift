import Packet

/// A byte-at-a-time RFC 1071 sum, deliberately unlike the code under test, to check it.
func referenceSum(_ bytes: some Sequence<UInt8>) -> UInt16 {
    var total: UInt32 = 0
    var high: UInt8? = nil
    for byte in bytes {
        if let first = high {
            total += UInt32(first) << 8 | UInt32(byte)
            high = nil
        } else {
            high = byte
        }
    }
    if let first = high { total += UInt32(first) << 8 }
    while total > 0xFFFF { total = (total & 0xFFFF) + (total >> 16) }
    return UInt16(total)
}

/// Where the pieces of a well-formed test packet are, found independently of `IPPacket`.
struct Layout {
    let isIPv4: Bool
    let transportOffset: Int
    let transportLength: Int
    let protocolNumber: UInt8

    init(_ bytes: [UInt8]) {
        isIPv4 = bytes[0] >> 4 == 4
        if isIPv4 {
            transportOffset = Int(bytes[0] & 0x0F) * 4
            transportLength = (Int(bytes[2]) << 8 | Int(bytes[3])) - transportOffset
            protocolNumber = bytes[9]
        } else {
            var offset = 40
            var next = bytes[6]
            while next != 6 && next != 17 {
                let length = next == 44 ? 8 : (Int(bytes[offset + 1]) + 1) * 8
                next = bytes[offset]
                offset += length
            }
            transportOffset = offset
            transportLength = 40 + (Int(bytes[4]) << 8 | Int(bytes[5])) - offset
            protocolNumber = next
        }
    }

    var checksumOffset: Int { transportOffset + (protocolNumber == 6 ? 16 : 6) }

    /// The pseudo-header of RFC 793 / RFC 8200 §8.1, as bytes.
    func pseudoHeader(_ bytes: [UInt8]) -> [UInt8] {
        let length = transportLength
        if isIPv4 {
            return Array(bytes[12..<20]) + [0, protocolNumber, UInt8(length >> 8), UInt8(length & 0xFF)]
        }
        return Array(bytes[8..<40]) + [UInt8(length >> 24), UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF),
                                       UInt8(length & 0xFF), 0, 0, 0, protocolNumber]
    }

    func segment(_ bytes: [UInt8]) -> ArraySlice<UInt8> {
        bytes[transportOffset..<transportOffset + transportLength]
    }

    /// Independent verification: pseudo-header plus segment sum to 0xFFFF.
    func checksumIsValid(_ bytes: [UInt8]) -> Bool {
        referenceSum(pseudoHeader(bytes) + segment(bytes)) == 0xFFFF
    }

    func checksumField(_ bytes: [UInt8]) -> UInt16 {
        UInt16(bytes[checksumOffset]) << 8 | UInt16(bytes[checksumOffset + 1])
    }

    func setChecksumField(_ bytes: inout [UInt8], _ value: UInt16) {
        bytes[checksumOffset] = UInt8(value >> 8)
        bytes[checksumOffset + 1] = UInt8(value & 0xFF)
    }

    /// What the kernel leaves in the field when the device is to finish the checksum: the
    /// folded pseudo-header sum, not complemented.
    func partialChecksum(_ bytes: [UInt8]) -> UInt16 {
        referenceSum(pseudoHeader(bytes))
    }
}

/// Parses `bytes` and runs `body` on the packet; returns the error, if any.
@discardableResult
func rewrite(_ bytes: inout [UInt8], _ body: (inout IPPacket) throws(PacketError) -> Void = { _ in }) -> PacketError? {
    bytes.withUnsafeMutableBytes { raw in
        do throws(PacketError) {
            var packet = try IPPacket(raw)
            try body(&packet)
            return nil
        } catch {
            return error
        }
    }
}

/// Runs `body` on a parsed packet for reading; fails the parse with its error.
func parse<Value>(_ bytes: [UInt8], _ body: (IPPacket) -> Value) throws(PacketError) -> Value {
    var copy = bytes
    let result = copy.withUnsafeMutableBytes { raw -> Result<Value, PacketError> in
        do throws(PacketError) {
            return .success(body(try IPPacket(raw)))
        } catch {
            return .failure(error)
        }
    }
    return try result.get()
}

/// SplitMix64: small, seeded, reproducible.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var value = state
        value = (value ^ (value >> 30)) &* 0xBF58_476D_1CE4_E5B9
        value = (value ^ (value >> 27)) &* 0x94D0_49BB_1331_11EB
        return value ^ (value >> 31)
    }
}

extension Array where Element == UInt8 {
    mutating func setUInt16(_ value: UInt16, at offset: Int) {
        self[offset] = UInt8(value >> 8)
        self[offset + 1] = UInt8(value & 0xFF)
    }

    func uint16(at offset: Int) -> UInt16 {
        UInt16(self[offset]) << 8 | UInt16(self[offset + 1])
    }

    /// Recomputes the IPv4 header checksum after a test edits the header.
    mutating func fixIPv4HeaderChecksum() {
        let headerLength = Int(self[0] & 0x0F) * 4
        setUInt16(0, at: 10)
        setUInt16(~referenceSum(self[0..<headerLength]), at: 10)
    }
}
