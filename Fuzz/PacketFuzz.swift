// libFuzzer harness for Sources/Packet: input bytes → IPPacket(buffer). Compiled together
// with Sources/Packet/*.swift into one module (see Fuzz/run.sh), so no import is needed.
//
// Invariants checked (a violation calls fatalError, which libFuzzer reports as a crash):
//   - parsing never reads outside the buffer (AddressSanitizer: the input is copied into an
//     allocation of exactly its size) and never traps;
//   - every getter of a parsed packet stays inside `bytes` (the datagram the IP header declares);
//   - set{Source,Destination}Port(_:checksum:) with .complete and .partial, on a copy:
//       * a throwing rewrite changes no byte;
//       * a successful one changes only the port field and the checksum field, and the port
//         reads back;
//       * after a successful .partial rewrite the transport checksum is valid;
//       * after a successful .complete rewrite of a packet whose checksum was valid, it stays valid;
//   - PacketRepresentation(packet).emit(...) of a parsed packet re-parses to the same
//     representation with valid checksums;
//   - IPAddress text round-trips: the packet's addresses, and the input read as address text.

@_cdecl("LLVMFuzzerTestOneInput")
public func packetFuzzTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    // An exact-size heap copy: one byte past the end is an ASan report.
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 1)
    defer { buffer.deallocate() }
    if size > 0, let data { buffer.copyMemory(from: UnsafeRawBufferPointer(start: data, count: size)) }

    // The same bytes as address text (the configuration's parser): text → address → text → address.
    if let address = IPAddress(String(decoding: UnsafeRawBufferPointer(buffer), as: UTF8.self)) {
        require(IPAddress(address.description) == address, "address text does not round-trip: \(address)")
    }

    let packet: IPPacket
    do {
        packet = try IPPacket(buffer)
    } catch {
        _ = error.description
        return 0
    }
    // Bytes after the datagram (Ethernet padding to the parser) choose one more port for the
    // rewrites, so the fuzzer can steer the RFC 1624 update onto its edge cases.
    let trailingPort: UInt16? = size >= packet.bytes.count + 2
        ? UInt16(buffer[size - 2]) << 8 | UInt16(buffer[size - 1]) : nil
    check(packet, trailingPort: trailingPort)
    return 0
}

private func require(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String,
                     file: StaticString = #fileID, line: UInt = #line) {
    if !condition() { fatalError("invariant violated: \(message())", file: file, line: line) }
}

/// Whether `inner` lies within `outer` (same memory, not copied).
private func isInside(_ inner: UnsafeMutableRawBufferPointer, _ outer: UnsafeMutableRawBufferPointer) -> Bool {
    guard inner.count > 0 else { return true }
    guard let innerStart = inner.baseAddress, let outerStart = outer.baseAddress else { return false }
    return innerStart >= outerStart && innerStart + inner.count <= outerStart + outer.count
}

private func check(_ packet: IPPacket, trailingPort: UInt16?) {
    let bytes = packet.bytes
    // Structure.
    require(packet.networkHeaderLength + packet.transportLength == bytes.count, "lengths do not add up")
    require(packet.transportOffset == packet.networkHeaderLength, "transport offset")
    require(isInside(packet.transportSegment, bytes), "transport segment outside the datagram")
    switch packet.transportProtocol {
    case .tcp: require(packet.transportLength >= TCPHeader.minimumLength, "short TCP segment accepted")
    case .udp: require(packet.transportLength >= UDPHeader.headerLength, "short UDP datagram accepted")
    }

    // Every getter.
    var sink = 0
    sink &+= packet.sourceAddress.hashValue &+ packet.destinationAddress.hashValue
    sink &+= Int(packet.sourcePort) &+ Int(packet.destinationPort) &+ Int(packet.tcpFlags.rawValue)
    sink &+= packet.tcpFlags.description.utf8.count
    sink &+= Int(packet.transportChecksum) &+ Int(packet.pseudoHeaderSum)
    sink &+= packet.transportChecksumIsValid() ? 1 : 0
    sink &+= packet.isFragment ? 1 : 0
    if let ipv4 = packet.ipv4Header {
        require(packet.version == .v4 && ipv4.version == 4, "IPv4 view on a non-IPv4 packet")
        require(ipv4.totalLength == bytes.count, "IPv4 total length is not the datagram length")
        require(ipv4.headerLength == packet.networkHeaderLength, "IPv4 header length")
        require(ipv4.fragmentOffset == 0, "non-first fragment accepted")
        require(packet.isFragment == ipv4.moreFragments, "IPv4 fragment flag")
        require(isInside(ipv4.options, bytes), "IPv4 options outside the datagram")
        sink &+= Int(ipv4.differentiatedServices) &+ Int(ipv4.identification) &+ Int(ipv4.timeToLive)
        sink &+= Int(ipv4.protocolNumber) &+ Int(ipv4.headerChecksum) &+ (ipv4.dontFragment ? 1 : 0)
        sink &+= ipv4.headerChecksumIsValid() ? 1 : 0
        sink &+= ipv4.sourceAddress.ipv4Value.map(Int.init) ?? 0
        sink &+= ipv4.destinationAddress.ipv4Value.map(Int.init) ?? 0
        sink &+= ipv4.options.reduce(0) { $0 &+ Int($1) }
    }
    if let ipv6 = packet.ipv6Header {
        require(packet.version == .v6 && ipv6.version == 6, "IPv6 view on a non-IPv6 packet")
        require(ipv6.totalLength == bytes.count, "IPv6 total length is not the datagram length")
        require(packet.networkHeaderLength >= IPv6Header.length, "IPv6 header length")
        sink &+= Int(ipv6.trafficClass) &+ Int(ipv6.flowLabel) &+ Int(ipv6.nextHeader) &+ Int(ipv6.hopLimit)
        sink &+= ipv6.sourceAddress.hashValue &+ ipv6.destinationAddress.hashValue
        for index in 0..<8 { sink &+= Int(ipv6.sourceAddress.group(index)) }
    }
    if let tcp = packet.tcpHeader {
        require(isInside(tcp.bytes, bytes), "TCP view outside the datagram")
        require(isInside(tcp.options, tcp.bytes), "TCP options outside the segment")
        require(isInside(tcp.payload, tcp.bytes), "TCP payload outside the segment")
        require(tcp.headerLength + tcp.payload.count == tcp.bytes.count, "TCP lengths")
        require(tcp.sourcePort == packet.sourcePort && tcp.destinationPort == packet.destinationPort, "TCP ports")
        require(tcp.checksum == packet.transportChecksum, "TCP checksum getter")
        sink &+= Int(tcp.sequenceNumber) &+ Int(tcp.acknowledgmentNumber) &+ Int(tcp.windowSize)
        sink &+= Int(tcp.urgentPointer) &+ Int(tcp.flags.rawValue)
        sink &+= tcp.options.reduce(0) { $0 &+ Int($1) } &+ tcp.payload.reduce(0) { $0 &+ Int($1) }
    }
    if let udp = packet.udpHeader {
        require(isInside(udp.bytes, bytes), "UDP view outside the datagram")
        require(isInside(udp.payload, udp.bytes), "UDP payload outside the datagram")
        require(packet.isFragment ? udp.length > udp.bytes.count : udp.length == udp.bytes.count, "UDP length")
        require(udp.sourcePort == packet.sourcePort && udp.destinationPort == packet.destinationPort, "UDP ports")
        require(udp.checksum == packet.transportChecksum, "UDP checksum getter")
        sink &+= udp.payload.reduce(0) { $0 &+ Int($1) }
    }
    require(packet.tcpHeader == nil || packet.udpHeader == nil, "both TCP and UDP views")
    for address in [packet.sourceAddress, packet.destinationAddress] {
        require(IPAddress(address.description) == address, "address text does not round-trip: \(address)")
    }
    blackHole(sink)

    checkRewrites(packet, trailingPort: trailingPort)
    checkSegmentSizeClamp(packet)
    checkRepresentation(packet)
}

/// Lowering a SYN's MSS changes at most the option's two bytes and the checksum, leaves a
/// valid checksum valid, and makes a .partial one valid.
private func checkSegmentSizeClamp(_ packet: IPPacket) {
    let original = Array(packet.bytes)
    let wasValid = packet.transportChecksumIsValid()
    let copy = UnsafeMutableRawBufferPointer.allocate(byteCount: original.count, alignment: 1)
    defer { copy.deallocate() }
    for state in [ChecksumState.complete, .partial] {
        for limit in [UInt16(0), 536, 1460, 65491] {
            original.withUnsafeBytes { copy.copyMemory(from: $0) }
            guard var view = try? IPPacket(copy) else { fatalError("invariant violated: a copy of a parsed packet does not parse") }
            let before = view.maximumSegmentSize
            let changed = view.clampMaximumSegmentSize(to: limit, checksum: state)
            require(changed == (before.map { $0 > limit } ?? false), "clamp reported \(changed) for MSS \(String(describing: before)) and limit \(limit)")
            guard changed else {
                require(elementsEqual(copy, original), "a clamp that changed nothing changed bytes")
                continue
            }
            require(view.maximumSegmentSize == limit, "MSS does not read back")
            let differing = (0..<original.count).filter { copy[$0] != original[$0] }
            let checksumOffset = view.transportOffset + TCPHeader.checksumOffset
            require(differing.filter { !(checksumOffset..<checksumOffset + 2).contains($0) }.count <= 2, "clamp changed more than the option's value")
            if state == .partial || wasValid { require(view.transportChecksumIsValid(), "checksum invalid after the clamp (\(state))") }
        }
    }
}

// MARK: - Rewrites

private func checkRewrites(_ packet: IPPacket, trailingPort: UInt16?) {
    let original = Array(packet.bytes)
    let wasValid = packet.transportChecksumIsValid()
    var common: [UInt16] = [0, 1, 9000, 20017, 0xFFFF, ~packet.sourcePort, ~packet.destinationPort,
                            packet.sourcePort, packet.destinationPort &+ 1]
    if let trailing = trailingPort { common.append(trailing) }

    let copy = UnsafeMutableRawBufferPointer.allocate(byteCount: original.count, alignment: 1)
    defer { copy.deallocate() }
    for isSource in [true, false] {
        // Plus the two ports that make the new checksum come out as 0 (a UDP checksum must then
        // be sent as 0xFFFF), which random inputs would hit once in 65,536.
        let ports = common + zeroChecksumPorts(original, copy: copy, isSource: isSource)
        for port in ports {
            for state in [ChecksumState.complete, .partial] {
                original.withUnsafeBytes { copy.copyMemory(from: $0) }
                guard var view = try? IPPacket(copy) else {
                    fatalError("invariant violated: a copy of a parsed packet does not parse")
                }
                let portOffset = view.transportOffset + (isSource ? 0 : 2)
                let checksumOffset = view.transportOffset
                    + (view.transportProtocol == .tcp ? TCPHeader.checksumOffset : UDPHeader.checksumOffset)
                do {
                    if isSource {
                        try view.setSourcePort(port, checksum: state)
                    } else {
                        try view.setDestinationPort(port, checksum: state)
                    }
                } catch {
                    require(elementsEqual(copy, original), "a throwing rewrite (\(error)) changed bytes")
                    require(error == .fragmentNeedsFullChecksum && view.isFragment,
                            "unexpected rewrite error \(error)")
                    continue
                }
                require((isSource ? view.sourcePort : view.destinationPort) == port, "port does not read back")
                for index in 0..<original.count
                where !(portOffset..<portOffset + 2).contains(index) && !(checksumOffset..<checksumOffset + 2).contains(index) {
                    require(copy[index] == original[index], "rewrite changed byte \(index) outside port and checksum")
                }
                switch state {
                case .partial:
                    require(view.transportChecksumIsValid(),
                            "checksum invalid after a .partial rewrite (\(isSource ? "source" : "destination") port \(port))")
                case .complete:
                    if wasValid {
                        require(view.transportChecksumIsValid(),
                                "valid checksum became invalid after a .complete rewrite (\(isSource ? "source" : "destination") port \(port))")
                    }
                }
                if view.transportProtocol == .udp && view.transportChecksum == 0 {
                    // 0 means "no checksum": only "no checksum" over IPv4, kept by .complete, may stay 0;
                    // a computed 0 must go out as 0xFFFF.
                    let before = UInt16(original[checksumOffset]) << 8 | UInt16(original[checksumOffset + 1])
                    require(view.version == .v4 && before == 0 && state == .complete, "UDP checksum 0 written")
                }
            }
        }
    }
}

/// The port that makes RFC 1624's update yield 0 (.complete), and the one that makes the full
/// recompute yield 0 (.partial), for the port field of `original` chosen by `isSource`.
private func zeroChecksumPorts(_ original: [UInt8], copy: UnsafeMutableRawBufferPointer, isSource: Bool) -> [UInt16] {
    original.withUnsafeBytes { copy.copyMemory(from: $0) }
    guard let packet = try? IPPacket(copy) else { return [] }
    let portOffset = packet.transportOffset + (isSource ? 0 : 2)
    let checksumOffset = packet.transportOffset
        + (packet.transportProtocol == .tcp ? TCPHeader.checksumOffset : UDPHeader.checksumOffset)
    // .complete: ~HC + ~m + m' must fold to 0xFFFF.
    let current = packet.transportChecksum
    let old = UInt16(original[portOffset]) << 8 | UInt16(original[portOffset + 1])
    let incremental = ~InternetChecksum.add(~current, ~old)
    // .partial: pseudo-header + segment (port and checksum fields 0) + m' must fold to 0xFFFF.
    for offset in [portOffset, portOffset + 1, checksumOffset, checksumOffset + 1] { copy[offset] = 0 }
    let rest = InternetChecksum.add(packet.pseudoHeaderSum, InternetChecksum.sum(packet.transportSegment))
    return [incremental, ~rest]
}

private func elementsEqual(_ buffer: UnsafeMutableRawBufferPointer, _ array: [UInt8]) -> Bool {
    buffer.count == array.count && zip(buffer, array).allSatisfy { $0 == $1 }
}

// MARK: - Representation

private func checkRepresentation(_ packet: IPPacket) {
    let representation = PacketRepresentation(packet)
    // emit's documented precondition: both addresses of one family. An IPv6 packet may carry
    // one IPv4-mapped address and one native one; that is the caller's bug, not the parser's.
    guard representation.sourceAddress.isIPv4 == representation.destinationAddress.isIPv4 else { return }
    let options: UnsafeMutableRawBufferPointer
    let payload: UnsafeMutableRawBufferPointer
    if let tcp = packet.tcpHeader {
        options = tcp.options
        payload = tcp.payload
    } else if let udp = packet.udpHeader {
        options = UnsafeMutableRawBufferPointer(start: nil, count: 0)
        payload = udp.payload
    } else {
        fatalError("invariant violated: neither TCP nor UDP")
    }
    let length = representation.emittedLength(tcpOptionsLength: options.count, payloadLength: payload.count)
    let output = UnsafeMutableRawBufferPointer.allocate(byteCount: length, alignment: 1)
    defer { output.deallocate() }
    let written: Int
    do {
        written = try representation.emit(into: output, tcpOptions: UnsafeRawBufferPointer(options),
                                          payload: UnsafeRawBufferPointer(payload))
    } catch {
        // Only an IPv6 packet with IPv4-mapped addresses can outgrow an IPv4 datagram.
        require(packet.version == .v6 && error == .badTotalLength(length), "emit failed: \(error)")
        return
    }
    require(written == length, "emit wrote \(written), announced \(length)")
    guard let reparsed = try? IPPacket(output) else {
        fatalError("invariant violated: an emitted packet does not parse")
    }
    require(PacketRepresentation(reparsed) == representation, "representation does not round-trip")
    require(reparsed.transportChecksumIsValid(), "emitted packet has an invalid transport checksum")
    if let ipv4 = reparsed.ipv4Header { require(ipv4.headerChecksumIsValid(), "emitted IPv4 header checksum") }
}

@inline(never)
private func blackHole(_ value: Int) {
    if value == 0x5EED_5EED_5EED { print("") }
}
