// The MSS option of a TCP SYN (RFC 9293 §3.7.1), for a datapath that must keep every
// segment of a connection under a size it can carry.
extension IPPacket {
    /// The MSS option's value when this is a TCP segment with the SYN flag that has one.
    public var maximumSegmentSize: UInt16? {
        guard let offset = maximumSegmentSizeOffset() else { return nil }
        return transportSegment.loadBigEndianUInt16(at: offset)
    }

    /// Lowers the MSS option of a TCP SYN to `limit` when it announces more, keeping the
    /// transport checksum complete; returns whether it changed the packet. A segment
    /// without the option, or with options that do not parse, is left alone.
    @discardableResult
    public mutating func clampMaximumSegmentSize(to limit: UInt16, checksum state: ChecksumState) -> Bool {
        guard let offset = maximumSegmentSizeOffset() else { return false }
        let segment = transportSegment
        guard segment.loadBigEndianUInt16(at: offset) > limit else { return false }
        switch state {
        case .complete:
            // The value may sit at an odd offset (options are byte-aligned): update every
            // 16-bit word of the one's complement sum it touches (RFC 1624).
            let first = offset & ~1, end = (offset + 3) & ~1
            var old: (UInt16, UInt16) = (0, 0)
            old.0 = segment.loadBigEndianUInt16(at: first)
            if end - first == 4 { old.1 = segment.loadBigEndianUInt16(at: first + 2) }
            segment.storeBigEndian(limit, at: offset)
            var checksum = segment.loadBigEndianUInt16(at: TCPHeader.checksumOffset)
            checksum = InternetChecksum.update(checksum, old: old.0, new: segment.loadBigEndianUInt16(at: first))
            if end - first == 4 {
                checksum = InternetChecksum.update(checksum, old: old.1, new: segment.loadBigEndianUInt16(at: first + 2))
            }
            segment.storeBigEndian(checksum, at: TCPHeader.checksumOffset)
        case .partial:
            segment.storeBigEndian(limit, at: offset)
            fillTransportChecksum()
        }
        return true
    }

    /// Where the MSS option's value starts in the transport segment, if this is a SYN
    /// carrying a well-formed one.
    private func maximumSegmentSizeOffset() -> Int? {
        guard transportProtocol == .tcp, !isFragment, tcpFlags.contains(.syn) else { return nil }
        let segment = transportSegment
        guard segment.count >= TCPHeader.minimumLength else { return nil }
        let headerLength = min(Int(segment[12] >> 4) * 4, segment.count)
        var offset = TCPHeader.minimumLength
        while offset < headerLength {
            switch segment[offset] {
            case 0: return nil  // end of options
            case 1: offset += 1  // no-operation
            default:
                guard offset + 1 < headerLength else { return nil }
                let length = Int(segment[offset + 1])
                guard length >= 2, offset + length <= headerLength else { return nil }
                if segment[offset] == 2 { return length == 4 ? offset + 2 : nil }
                offset += length
            }
        }
        return nil
    }
}
