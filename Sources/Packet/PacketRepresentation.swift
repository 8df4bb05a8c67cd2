/// An owned description of an IP + TCP/UDP packet, smoltcp's `Repr`: parse a view into it,
/// change what you need, and emit a complete packet (valid checksums) into a caller's buffer.
/// The emitted packet has no IPv4 options or IPv6 extension headers.
public struct PacketRepresentation: Hashable, Sendable {
    public var sourceAddress: IPAddress
    public var destinationAddress: IPAddress
    public var transportProtocol: TransportProtocol
    public var sourcePort: UInt16
    public var destinationPort: UInt16
    /// TCP only.
    public var sequenceNumber: UInt32
    /// TCP only.
    public var acknowledgmentNumber: UInt32
    /// TCP only.
    public var tcpFlags: TCPFlags
    /// TCP only.
    public var windowSize: UInt16
    /// IPv4 time to live or IPv6 hop limit.
    public var hopLimit: UInt8
    /// IPv4 only.
    public var identification: UInt16
    /// IPv6 only.
    public var flowLabel: UInt32

    public init(
        sourceAddress: IPAddress, destinationAddress: IPAddress, transportProtocol: TransportProtocol,
        sourcePort: UInt16, destinationPort: UInt16,
        sequenceNumber: UInt32 = 0, acknowledgmentNumber: UInt32 = 0, tcpFlags: TCPFlags = [],
        windowSize: UInt16 = 0, hopLimit: UInt8 = 64, identification: UInt16 = 0, flowLabel: UInt32 = 0
    ) {
        self.sourceAddress = sourceAddress
        self.destinationAddress = destinationAddress
        self.transportProtocol = transportProtocol
        self.sourcePort = sourcePort
        self.destinationPort = destinationPort
        self.sequenceNumber = sequenceNumber
        self.acknowledgmentNumber = acknowledgmentNumber
        self.tcpFlags = tcpFlags
        self.windowSize = windowSize
        self.hopLimit = hopLimit
        self.identification = identification
        self.flowLabel = flowLabel
    }

    /// The fields of `packet` this type describes.
    public init(_ packet: IPPacket) {
        self.init(
            sourceAddress: packet.sourceAddress, destinationAddress: packet.destinationAddress,
            transportProtocol: packet.transportProtocol,
            sourcePort: packet.sourcePort, destinationPort: packet.destinationPort)
        if let tcp = packet.tcpHeader {
            sequenceNumber = tcp.sequenceNumber
            acknowledgmentNumber = tcp.acknowledgmentNumber
            tcpFlags = tcp.flags
            windowSize = tcp.windowSize
        }
        if let ipv4 = packet.ipv4Header {
            hopLimit = ipv4.timeToLive
            identification = ipv4.identification
        }
        if let ipv6 = packet.ipv6Header {
            hopLimit = ipv6.hopLimit
            flowLabel = ipv6.flowLabel
        }
    }

    /// IPv4 when the source address is; both addresses must be of one family.
    public var version: IPVersion { sourceAddress.isIPv4 ? .v4 : .v6 }

    /// The length `emit` writes.
    public func emittedLength(tcpOptionsLength: Int = 0, payloadLength: Int) -> Int {
        let network = version == .v4 ? IPv4Header.minimumLength : IPv6Header.length
        let transport = transportProtocol == .tcp ? TCPHeader.minimumLength + tcpOptionsLength : UDPHeader.headerLength
        return network + transport + payloadLength
    }

    /// Writes the packet with `tcpOptions` (TCP only: a multiple of 4, at most 40 bytes) and
    /// `payload` into the start of `buffer`, fills every checksum, and returns its length.
    @discardableResult
    public func emit(
        into buffer: UnsafeMutableRawBufferPointer,
        tcpOptions: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0),
        payload: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0)
    ) throws(PacketError) -> Int {
        precondition(sourceAddress.isIPv4 == destinationAddress.isIPv4, "mixed IPv4 and IPv6 addresses")
        precondition(transportProtocol == .tcp || tcpOptions.isEmpty, "TCP options on a UDP packet")
        if transportProtocol == .tcp {
            let headerLength = TCPHeader.minimumLength + tcpOptions.count
            guard tcpOptions.count % 4 == 0, headerLength <= 60 else { throw .badDataOffset(headerLength / 4) }
        }
        let total = emittedLength(tcpOptionsLength: tcpOptions.count, payloadLength: payload.count)
        let networkLength = version == .v4 ? IPv4Header.minimumLength : IPv6Header.length
        let transportLength = total - networkLength
        guard (version == .v4 ? total : transportLength) <= 0xFFFF else { throw .badTotalLength(total) }
        guard total <= buffer.count else { throw .truncated(captured: buffer.count, declared: total) }

        let datagram = buffer.slice(0..<total)
        switch version {
        case .v4:
            var header = IPv4Header(unchecked: datagram)
            header.setHeaderLength(IPv4Header.minimumLength)
            header.setDifferentiatedServices(0)
            header.setTotalLength(total)
            header.setIdentification(identification)
            header.setFragmentation(dontFragment: true, moreFragments: false, offset: 0)
            header.setTimeToLive(hopLimit)
            header.setProtocolNumber(transportProtocol.rawValue)
            header.setSourceAddress(sourceAddress)
            header.setDestinationAddress(destinationAddress)
            header.fillHeaderChecksum()
        case .v6:
            var header = IPv6Header(unchecked: datagram)
            header.setTrafficClassAndFlowLabel(trafficClass: 0, flowLabel: flowLabel)
            header.setPayloadLength(transportLength)
            header.setNextHeader(transportProtocol.rawValue)
            header.setHopLimit(hopLimit)
            header.setSourceAddress(sourceAddress)
            header.setDestinationAddress(destinationAddress)
        }

        let segment = datagram.slice(networkLength..<total)
        let payloadStart: Int
        switch transportProtocol {
        case .tcp:
            var header = TCPHeader(unchecked: segment)
            header.setSourcePort(sourcePort)
            header.setDestinationPort(destinationPort)
            header.setSequenceNumber(sequenceNumber)
            header.setAcknowledgmentNumber(acknowledgmentNumber)
            header.setHeaderLength(TCPHeader.minimumLength + tcpOptions.count)
            header.setFlags(tcpFlags)
            header.setWindowSize(windowSize)
            header.setChecksum(0)
            header.setUrgentPointer(0)
            header.options.copyMemory(from: tcpOptions)
            payloadStart = header.headerLength
        case .udp:
            var header = UDPHeader(unchecked: segment)
            header.setSourcePort(sourcePort)
            header.setDestinationPort(destinationPort)
            header.setLength(transportLength)
            header.setChecksum(0)
            payloadStart = UDPHeader.headerLength
        }
        segment.slice(payloadStart..<segment.count).copyMemory(from: payload)

        var packet = try IPPacket(datagram)
        packet.fillTransportChecksum()
        return total
    }
}
