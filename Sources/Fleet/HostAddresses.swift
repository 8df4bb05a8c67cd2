#if canImport(Glibc)
import Glibc
#endif
public import Packet
public import Policy

/// The addresses an engine publishes when `fleet: addresses` does not list them: every
/// address of the host's interfaces inside the fleet's network, loopback and link-local aside.
public enum HostAddresses {
    public static func inFleet(_ network: SourceMatch) -> [IPAddress] {
        var first: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&first) == 0 else { return [] }
        defer { freeifaddrs(first) }
        var found: [IPAddress] = []
        var next = first
        while let entry = next {
            next = entry.pointee.ifa_next
            guard let socketAddress = entry.pointee.ifa_addr else { continue }
            var address: IPAddress?
            switch Int32(socketAddress.pointee.sa_family) {
            case AF_INET:
                socketAddress.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { inet in
                    address = IPAddress(ipv4: UInt32(bigEndian: inet.pointee.sin_addr.s_addr))
                }
            case AF_INET6:
                socketAddress.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { inet6 in
                    var bytes = inet6.pointee.sin6_addr
                    let raw = withUnsafeBytes(of: &bytes) { Array($0) }
                    guard raw[0] != 0xFE || raw[1] & 0xC0 != 0x80 else { return }  // fe80::/10
                    let high = raw[0..<8].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
                    let low = raw[8..<16].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
                    address = IPAddress(high: high, low: low)
                }
            default: continue
            }
            guard let address, network.containsAddress(address), !found.contains(address) else { continue }
            if address.ipv4Value.map({ $0 >> 24 == 127 }) == true { continue }
            found.append(address)
        }
        return found
    }
}
