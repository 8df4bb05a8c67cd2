import Foundation

/// The kernel's ephemeral port range and its reserved ports (this network namespace's
/// net.ipv4.ip_local_port_range and ip_local_reserved_ports, which IPv6 shares). A virtual
/// port the kernel could hand to any client socket as its local port would be a port
/// vpm does not own: the engine refuses to start with such a range.
struct EphemeralPorts: Equatable {
    var range: ClosedRange<UInt16>
    var reserved: [ClosedRange<UInt16>]

    static func read() -> EphemeralPorts? {
        guard let range = try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8),
              let reserved = try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_reserved_ports", encoding: .utf8)
        else { return nil }
        return parse(range: range, reserved: reserved)
    }

    /// "32768\t60999\n" and "20000-20999,30000\n" (empty: none).
    static func parse(range: String, reserved: String) -> EphemeralPorts? {
        let bounds = range.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).compactMap { UInt16($0) }
        guard bounds.count == 2, bounds[0] <= bounds[1] else { return nil }
        var reservedRanges: [ClosedRange<UInt16>] = []
        for item in reserved.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ",") {
            let ends = item.split(separator: "-").compactMap { UInt16($0) }
            if ends.count == 1 { reservedRanges.append(ends[0]...ends[0]) }
            if ends.count == 2, ends[0] <= ends[1] { reservedRanges.append(ends[0]...ends[1]) }
        }
        return EphemeralPorts(range: bounds[0]...bounds[1], reserved: reservedRanges)
    }

    /// The virtual ports the kernel may give out as ephemeral ports, as ranges; empty when none.
    func exposed(_ virtualPorts: ClosedRange<UInt16>) -> [ClosedRange<UInt16>] {
        guard virtualPorts.overlaps(range) else { return [] }
        let overlap = virtualPorts.clamped(to: range)
        var exposed: [ClosedRange<UInt16>] = []
        var start: UInt16? = nil
        for port in overlap {
            let isReserved = reserved.contains { $0.contains(port) }
            if !isReserved && start == nil { start = port }
            if isReserved, let first = start { exposed.append(first...(port - 1)); start = nil }
        }
        if let first = start { exposed.append(first...overlap.upperBound) }
        return exposed
    }

    /// Why the engine must not start with `virtualPorts`, or nil.
    func problem(_ virtualPorts: ClosedRange<UInt16>) -> String? {
        let exposed = exposed(virtualPorts)
        guard !exposed.isEmpty else { return nil }
        let text = exposed.map { $0.count == 1 ? "\($0.lowerBound)" : "\($0.lowerBound)-\($0.upperBound)" }.joined(separator: ",")
        return "virtual-ports \(virtualPorts.lowerBound)-\(virtualPorts.upperBound) overlap the ephemeral port range "
            + "\(range.lowerBound)-\(range.upperBound) (net.ipv4.ip_local_port_range): any program's outgoing socket could take "
            + "port \(text) and receive an instance's traffic. Choose virtual-ports outside it, or reserve them: "
            + "sysctl -w net.ipv4.ip_local_reserved_ports=\(text)"
    }
}
