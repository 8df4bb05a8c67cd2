internal import CNetfilterQueue
#if canImport(Glibc)
internal import Glibc
#endif

/// ctnetlink messages to values, walked here with libmnl's attribute helpers.
///
/// Not with libnetfilter_conntrack's nfct_nlmsg_parse: on an attribute of unexpected size it
/// prints "ctnetlink kernel ABI is broken" and calls exit(1), which would take the engine
/// down. Here a malformed message is refused (nil) and counted, nothing else happens.
/// Attributes this code does not know are skipped; a known one of the wrong size, or one
/// whose length runs past its parent, makes the whole message malformed.
extension Conntrack {
    /// A dump entry or an event message as an entry; nil when it is not a conntrack entry
    /// (another subsystem, an expectation) or is malformed.
    static func entry(from header: UnsafePointer<nlmsghdr>) -> ConntrackEntry? {
        let prefix = MemoryLayout<nlmsghdr>.size + MemoryLayout<nfgenmsg>.size  // both 4-aligned
        guard header.pointee.nlmsg_type >> 8 == UInt16(NFNL_SUBSYS_CTNETLINK),
              Int(header.pointee.nlmsg_len) >= prefix
        else { return nil }
        let attributes = UnsafeRawBufferPointer(
            start: mnl_nlmsg_get_payload_offset(header, MemoryLayout<nfgenmsg>.size),
            count: Int(header.pointee.nlmsg_len) - prefix)
        var fields = Fields()
        guard fields.parse(attributes),
              let original = fields.original.tuple, let reply = fields.reply.tuple,
              let protocolNumber = fields.original.protocolNumber
        else { return nil }
        return ConntrackEntry(
            id: fields.id,
            protocolNumber: protocolNumber,
            original: original,
            reply: reply,
            mark: fields.mark,
            tcpState: protocolNumber == UInt8(IPPROTO_TCP) ? fields.tcpState : nil,
            originalPackets: fields.originalPackets,
            originalBytes: fields.originalBytes,
            replyPackets: fields.replyPackets,
            replyBytes: fields.replyBytes,
            isAssured: fields.status & UInt32(IPS_ASSURED.rawValue) != 0,
            timeout: fields.timeout)
    }

    /// An event message: IPCTNL_MSG_CT_NEW with NLM_F_CREATE is `.new`, without it `.update`;
    /// IPCTNL_MSG_CT_DELETE is `.destroy`.
    static func event(from header: UnsafePointer<nlmsghdr>) -> ConntrackEvent? {
        let type = header.pointee.nlmsg_type
        guard type == messageType(IPCTNL_MSG_CT_NEW) || type == messageType(IPCTNL_MSG_CT_DELETE),
              let entry = entry(from: header)
        else { return nil }
        if type == messageType(IPCTNL_MSG_CT_DELETE) { return .destroy(entry) }
        return header.pointee.nlmsg_flags & UInt16(NLM_F_CREATE) != 0 ? .new(entry) : .update(entry)
    }

    /// One netlink message given as bytes (a captured fixture), parsed as an event.
    static func event(fromMessage bytes: [UInt8]) -> ConntrackEvent? {
        withNetlinkMessage(bytes) { event(from: $0) } ?? nil
    }

    /// One netlink message given as bytes (a captured dump answer), parsed as an entry.
    static func entry(fromMessage bytes: [UInt8]) -> ConntrackEntry? {
        withNetlinkMessage(bytes) { entry(from: $0) } ?? nil
    }
}

/// One netlink message given as bytes (a fixture) as a header `body` can parse; nil when
/// the bytes are not one whole message.
func withNetlinkMessage<T>(_ bytes: [UInt8], _ body: (UnsafeMutablePointer<nlmsghdr>) -> T) -> T? {
    guard bytes.count >= MemoryLayout<nlmsghdr>.size else { return nil }
    // Netlink parsing wants an aligned buffer that holds the whole message.
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 8)
    defer { buffer.deallocate() }
    bytes.withUnsafeBytes { buffer.copyMemory(from: $0) }
    let header = buffer.baseAddress!.assumingMemoryBound(to: nlmsghdr.self)
    guard mnl_nlmsg_ok(header, Int32(bytes.count)) else { return nil }
    return body(header)
}

// MARK: - Attributes

/// Calls `body` with the type and payload of each attribute in `area`. False when an
/// attribute is shorter than its header or runs past the area, or when `body` says so.
func forEachAttribute(
    _ area: UnsafeRawBufferPointer, _ body: (UInt16, UnsafeRawBufferPointer) -> Bool
) -> Bool {
    guard var address = area.baseAddress else { return area.isEmpty }
    var remaining = area.count
    while remaining > 0 {
        let attribute = address.assumingMemoryBound(to: nlattr.self)
        guard mnl_attr_ok(attribute, Int32(remaining)) else { return false }
        let payload = UnsafeRawBufferPointer(
            start: mnl_attr_get_payload(attribute), count: Int(mnl_attr_get_payload_len(attribute)))
        guard body(mnl_attr_get_type(attribute), payload) else { return false }
        // Attributes are padded to 4 bytes; the last one's padding may be missing.
        let step = (Int(attribute.pointee.nla_len) + 3) & ~3
        guard step < remaining else { return true }
        remaining -= step
        address += step
    }
    return true
}

/// A big-endian integer attribute of exactly its size.
func bigEndian<T: FixedWidthInteger>(_ payload: UnsafeRawBufferPointer, as _: T.Type = T.self) -> T? {
    guard payload.count == MemoryLayout<T>.size else { return nil }
    return T(bigEndian: payload.loadUnaligned(as: T.self))
}

private func attributeType<T: RawRepresentable>(_ value: T) -> UInt16 where T.RawValue: BinaryInteger {
    UInt16(value.rawValue)
}

/// CTA_TUPLE_ORIG / CTA_TUPLE_REPLY: CTA_TUPLE_IP and CTA_TUPLE_PROTO (CTA_TUPLE_ZONE skipped).
private struct TupleFields {
    var source: [UInt8]?
    var destination: [UInt8]?
    var protocolNumber: UInt8?
    var sourcePort: UInt16 = 0
    var destinationPort: UInt16 = 0

    var tuple: ConntrackTuple? {
        guard let source, let destination, protocolNumber != nil else { return nil }
        return ConntrackTuple(source: source, destination: destination, sourcePort: sourcePort, destinationPort: destinationPort)
    }

    mutating func parse(_ area: UnsafeRawBufferPointer) -> Bool {
        forEachAttribute(area) { kind, payload in
            switch kind {
            case attributeType(CTA_TUPLE_IP): return parseAddresses(payload)
            case attributeType(CTA_TUPLE_PROTO): return parseProtocol(payload)
            default: return true
            }
        }
    }

    private mutating func parseAddresses(_ area: UnsafeRawBufferPointer) -> Bool {
        forEachAttribute(area) { kind, payload in
            switch kind {
            case attributeType(CTA_IP_V4_SRC), attributeType(CTA_IP_V4_DST):
                guard payload.count == 4 else { return false }
                if kind == attributeType(CTA_IP_V4_SRC) { source = Array(payload) } else { destination = Array(payload) }
            case attributeType(CTA_IP_V6_SRC), attributeType(CTA_IP_V6_DST):
                guard payload.count == 16 else { return false }
                if kind == attributeType(CTA_IP_V6_SRC) { source = Array(payload) } else { destination = Array(payload) }
            default:
                break
            }
            return true
        }
    }

    private mutating func parseProtocol(_ area: UnsafeRawBufferPointer) -> Bool {
        forEachAttribute(area) { kind, payload in
            switch kind {
            case attributeType(CTA_PROTO_NUM):
                guard let value = bigEndian(payload, as: UInt8.self) else { return false }
                protocolNumber = value
            case attributeType(CTA_PROTO_SRC_PORT):
                guard let value = bigEndian(payload, as: UInt16.self) else { return false }
                sourcePort = value
            case attributeType(CTA_PROTO_DST_PORT):
                guard let value = bigEndian(payload, as: UInt16.self) else { return false }
                destinationPort = value
            default:
                break
            }
            return true
        }
    }
}

/// The top-level attributes of a conntrack message that `ConntrackEntry` holds.
private struct Fields {
    var original = TupleFields()
    var reply = TupleFields()
    var id: UInt32 = 0
    var status: UInt32 = 0
    var mark: UInt32 = 0
    var tcpState: UInt8?
    var timeout: UInt32?
    var originalPackets: UInt64 = 0
    var originalBytes: UInt64 = 0
    var replyPackets: UInt64 = 0
    var replyBytes: UInt64 = 0

    mutating func parse(_ area: UnsafeRawBufferPointer) -> Bool {
        forEachAttribute(area) { kind, payload in
            switch kind {
            case attributeType(CTA_TUPLE_ORIG): return original.parse(payload)
            case attributeType(CTA_TUPLE_REPLY): return reply.parse(payload)
            case attributeType(CTA_ID): return Self.read(payload, into: &id)
            case attributeType(CTA_STATUS): return Self.read(payload, into: &status)
            case attributeType(CTA_MARK): return Self.read(payload, into: &mark)
            case attributeType(CTA_TIMEOUT):
                var value: UInt32 = 0
                guard Self.read(payload, into: &value) else { return false }
                timeout = value
                return true
            case attributeType(CTA_PROTOINFO): return parseProtocolInfo(payload)
            case attributeType(CTA_COUNTERS_ORIG): return Self.parseCounters(payload, packets: &originalPackets, bytes: &originalBytes)
            case attributeType(CTA_COUNTERS_REPLY): return Self.parseCounters(payload, packets: &replyPackets, bytes: &replyBytes)
            default: return true
            }
        }
    }

    private static func read(_ payload: UnsafeRawBufferPointer, into value: inout UInt32) -> Bool {
        guard let read = bigEndian(payload, as: UInt32.self) else { return false }
        value = read
        return true
    }

    /// CTA_PROTOINFO > CTA_PROTOINFO_TCP > CTA_PROTOINFO_TCP_STATE (DCCP, SCTP skipped).
    private mutating func parseProtocolInfo(_ area: UnsafeRawBufferPointer) -> Bool {
        forEachAttribute(area) { kind, payload in
            guard kind == attributeType(CTA_PROTOINFO_TCP) else { return true }
            return forEachAttribute(payload) { kind, payload in
                guard kind == attributeType(CTA_PROTOINFO_TCP_STATE) else { return true }
                guard let state = bigEndian(payload, as: UInt8.self) else { return false }
                tcpState = state
                return true
            }
        }
    }

    /// CTA_COUNTERS_*: 64-bit counters, or the 32-bit ones of old kernels.
    private static func parseCounters(_ area: UnsafeRawBufferPointer, packets: inout UInt64, bytes: inout UInt64) -> Bool {
        forEachAttribute(area) { kind, payload in
            switch kind {
            case attributeType(CTA_COUNTERS_PACKETS), attributeType(CTA_COUNTERS_BYTES):
                guard let value = bigEndian(payload, as: UInt64.self) else { return false }
                if kind == attributeType(CTA_COUNTERS_PACKETS) { packets = value } else { bytes = value }
            case attributeType(CTA_COUNTERS32_PACKETS), attributeType(CTA_COUNTERS32_BYTES):
                guard let value = bigEndian(payload, as: UInt32.self) else { return false }
                if kind == attributeType(CTA_COUNTERS32_PACKETS) { packets = UInt64(value) } else { bytes = UInt64(value) }
            default:
                break
            }
            return true
        }
    }
}
