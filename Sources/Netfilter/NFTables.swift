internal import CNetfilterQueue
internal import SystemPackage
#if canImport(Glibc)
internal import Glibc
#endif

/// A named nftables counter's values.
public struct NFTablesCounter: Sendable, Equatable {
    public var packets: UInt64
    public var bytes: UInt64

    public init(packets: UInt64, bytes: UInt64) {
        self.packets = packets
        self.bytes = bytes
    }
}

/// nf_tables over netlink, for what the engine reads while it runs: a named counter, asked
/// with one NFT_MSG_GETOBJ request on a socket of its own (no `nft` process: a spawn costs
/// milliseconds, this costs microseconds). The socket belongs to the calling thread's
/// network namespace.
public enum NFTables {
    /// nftables' address families, as in `nft list counter inet …`.
    public enum Family: UInt8, Sendable {
        case inet = 1  // NFPROTO_INET
        case ipv4 = 2  // NFPROTO_IPV4 ("ip")
        case ipv6 = 10  // NFPROTO_IPV6 ("ip6")
    }

    /// How long to wait for the kernel's answer.
    static let answerTimeoutMilliseconds: Int32 = 2000

    /// The counter `name` of `table`. Throws `.readCounter` with ENOENT when the table or the
    /// counter does not exist.
    public static func counter(_ family: Family = .inet, table: String, name: String) throws(NetfilterError) -> NFTablesCounter {
        // nftables names are at most 255 bytes, without NUL.
        for text in [table, name] where text.utf8.count > 255 || text.utf8.contains(0) {
            throw NetfilterError(.readCounter, queue: 0, errno: .invalidArgument)
        }
        let socket = try NetlinkExchange.openSocket(.readCounter)
        defer { mnl_socket_close(socket) }
        // A counter's answer is about a hundred bytes; names are at most 256 each.
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 8192, alignment: 8)
        defer { buffer.deallocate() }
        let header = request(table: table, name: name, family: family, into: buffer)
        try NetlinkExchange.send(header, on: socket, .readCounter)
        var found: NFTablesCounter?
        try NetlinkExchange.readAnswer(on: socket, sequence: header.pointee.nlmsg_seq, into: buffer,
                                       timeoutMilliseconds: answerTimeoutMilliseconds, .readCounter) { message throws(NetfilterError) in
            guard Int32(message.pointee.nlmsg_type) == NLMSG_ERROR else {
                if let counter = counter(from: message) { found = counter }
                return false
            }
            // The acknowledgement (0) ends the answer; anything else is the errno.
            let code = NetlinkExchange.errorCode(message)
            guard code == 0 else { throw NetfilterError(.readCounter, queue: 0, errno: Errno(rawValue: -code)) }
            return true
        }
        guard let found else { throw NetfilterError(.readCounter, queue: 0, errno: .init(rawValue: EPROTO)) }
        return found
    }

    /// NFT_MSG_GETOBJ for one counter, asking for an acknowledgement after the answer.
    private static func request(table: String, name: String, family: Family,
                                into buffer: UnsafeMutableRawBufferPointer) -> UnsafeMutablePointer<nlmsghdr> {
        let header = mnl_nlmsg_put_header(buffer.baseAddress)!
        header.pointee.nlmsg_type = UInt16(NFNL_SUBSYS_NFTABLES << 8) | UInt16(NFT_MSG_GETOBJ.rawValue)
        header.pointee.nlmsg_flags = UInt16(NLM_F_REQUEST | NLM_F_ACK)
        header.pointee.nlmsg_seq = 1
        let extra = mnl_nlmsg_put_extra_header(header, MemoryLayout<nfgenmsg>.size)!.assumingMemoryBound(to: nfgenmsg.self)
        extra.pointee.nfgen_family = family.rawValue
        extra.pointee.version = UInt8(NFNETLINK_V0)
        extra.pointee.res_id = 0
        mnl_attr_put_strz(header, UInt16(NFTA_OBJ_TABLE.rawValue), table)
        mnl_attr_put_strz(header, UInt16(NFTA_OBJ_NAME.rawValue), name)
        mnl_attr_put_u32(header, UInt16(NFTA_OBJ_TYPE.rawValue), UInt32(NFT_OBJECT_COUNTER).bigEndian)
        return header
    }

    /// An NFT_MSG_NEWOBJ answer's counter (NFTA_OBJ_DATA: NFTA_COUNTER_PACKETS and
    /// NFTA_COUNTER_BYTES); nil for another message, another object type or a malformed one.
    static func counter(from header: UnsafePointer<nlmsghdr>) -> NFTablesCounter? {
        let prefix = MemoryLayout<nlmsghdr>.size + MemoryLayout<nfgenmsg>.size
        guard header.pointee.nlmsg_type == UInt16(NFNL_SUBSYS_NFTABLES << 8) | UInt16(NFT_MSG_NEWOBJ.rawValue),
              Int(header.pointee.nlmsg_len) >= prefix else { return nil }
        let attributes = UnsafeRawBufferPointer(start: mnl_nlmsg_get_payload_offset(header, MemoryLayout<nfgenmsg>.size),
                                                count: Int(header.pointee.nlmsg_len) - prefix)
        var type: UInt32?
        var packets: UInt64?
        var bytes: UInt64?
        let wellFormed = forEachAttribute(attributes) { kind, payload in
            switch kind {
            case UInt16(NFTA_OBJ_TYPE.rawValue):
                type = bigEndian(payload)
                return type != nil
            case UInt16(NFTA_OBJ_DATA.rawValue):
                return forEachAttribute(payload) { kind, payload in
                    switch kind {
                    case UInt16(NFTA_COUNTER_PACKETS.rawValue):
                        packets = bigEndian(payload)
                        return packets != nil
                    case UInt16(NFTA_COUNTER_BYTES.rawValue):
                        bytes = bigEndian(payload)
                        return bytes != nil
                    default: return true
                    }
                }
            default: return true
            }
        }
        guard wellFormed, type == UInt32(NFT_OBJECT_COUNTER), let packets, let bytes else { return nil }
        return NFTablesCounter(packets: packets, bytes: bytes)
    }

    /// One netlink message given as bytes (a captured answer), parsed as a counter.
    static func counter(fromMessage bytes: [UInt8]) -> NFTablesCounter? {
        withNetlinkMessage(bytes) { counter(from: $0) } ?? nil
    }
}
