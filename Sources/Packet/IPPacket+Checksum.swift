// Port rewriting and the transport checksum (ARCHITECTURE.md §5).
extension IPPacket {
    /// Sets the source port and keeps the transport checksum complete. Throws, changing
    /// nothing, when the checksum cannot be made complete.
    public mutating func setSourcePort(_ port: UInt16, checksum: ChecksumState) throws(PacketError) {
        try setPort(port, at: transportOffset, checksum: checksum)
    }

    /// Sets the destination port and keeps the transport checksum complete. Throws, changing
    /// nothing, when the checksum cannot be made complete.
    public mutating func setDestinationPort(_ port: UInt16, checksum: ChecksumState) throws(PacketError) {
        try setPort(port, at: transportOffset + 2, checksum: checksum)
    }

    /// The checksum field as it stands.
    public var transportChecksum: UInt16 { bytes.loadBigEndianUInt16(at: checksumOffset) }

    /// Verifies the checksum over pseudo-header and segment. UDP over IPv4 without a checksum
    /// (0) is valid; UDP over IPv6 with 0 is not (RFC 8200 §8.1). A fragment cannot be
    /// verified (the checksum covers the whole datagram), so it is reported invalid.
    public func transportChecksumIsValid() -> Bool {
        if transportProtocol == .udp && transportChecksum == 0 { return version == .v4 }
        if isFragment { return false }
        return fullSum() == 0xFFFF
    }

    /// Computes the checksum in full and stores it. Does nothing for a fragment, whose checksum
    /// covers bytes this packet does not hold.
    public mutating func fillTransportChecksum() {
        guard !isFragment else { return }
        bytes.storeBigEndian(UInt16(0), at: checksumOffset)
        var checksum = ~fullSum()
        // A computed 0 is sent as 0xFFFF: 0 would mean "no checksum" (RFC 768).
        if transportProtocol == .udp && checksum == 0 { checksum = 0xFFFF }
        bytes.storeBigEndian(checksum, at: checksumOffset)
    }

    /// The pseudo-header sum (not complemented). A kernel that leaves the checksum to the
    /// device stores exactly this in the field (the NFQA_SKB_CSUMNOTREADY case).
    public var pseudoHeaderSum: UInt16 {
        let addresses = switch version {
        case .v4: IPv4Header(unchecked: bytes).pseudoHeaderAddresses
        case .v6: IPv6Header(unchecked: bytes).pseudoHeaderAddresses
        }
        return InternetChecksum.pseudoHeaderSum(
            addresses: addresses, protocolNumber: transportProtocol.rawValue, transportLength: transportLength)
    }

    private var checksumOffset: Int {
        transportOffset + (transportProtocol == .tcp ? TCPHeader.checksumOffset : UDPHeader.checksumOffset)
    }

    /// Pseudo-header plus segment; the length comes from the IP header, not the buffer.
    private func fullSum() -> UInt16 {
        InternetChecksum.add(pseudoHeaderSum, InternetChecksum.sum(transportSegment))
    }

    private mutating func setPort(_ port: UInt16, at offset: Int, checksum state: ChecksumState) throws(PacketError) {
        let current = transportChecksum
        switch state {
        case .complete where transportProtocol == .udp && current == 0 && version == .v4:
            // "No checksum" stays "no checksum".
            bytes.storeBigEndian(port, at: offset)
        case .complete where transportProtocol == .udp && current == 0:
            // UDP over IPv6 must carry one, so write a full checksum.
            guard !isFragment else { throw .fragmentNeedsFullChecksum }
            bytes.storeBigEndian(port, at: offset)
            fillTransportChecksum()
        case .complete:
            let old = bytes.loadBigEndianUInt16(at: offset)
            var updated = InternetChecksum.update(current, old: old, new: port)
            if transportProtocol == .udp && updated == 0 { updated = 0xFFFF }
            bytes.storeBigEndian(port, at: offset)
            bytes.storeBigEndian(updated, at: checksumOffset)
        case .partial:
            // The field holds only the pseudo-header sum; updating it would keep it partial.
            guard !isFragment else { throw .fragmentNeedsFullChecksum }
            bytes.storeBigEndian(port, at: offset)
            fillTransportChecksum()
        }
    }
}
