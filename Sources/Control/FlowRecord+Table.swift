extension FlowRecord {
    /// Column titles of `vpm flows`, conntrack/ipvsadm style: one flow per line, the client
    /// side and both ports of the translation side by side.
    static let columns = ["PROTO", "STATE", "MODE", "CLIENT", "SERVER", "INITIAL", "VIRTUAL", "AID",
                          "AGE", "IDLE", "PKTS>", "BYTES>", "PKTS<", "BYTES<"]

    var cells: [String] {
        [transport, state, mode, Self.endpoint(client, clientPort), server, "\(initialPort)", "\(virtualPort)", aid,
         Self.duration(age), Self.duration(idle), "\(packetsToServer)", "\(bytesToServer)",
         "\(packetsToClient)", "\(bytesToClient)"]
    }

    /// Aligned columns for people; an empty table is just the header.
    public static func table(_ records: [FlowRecord]) -> String {
        alignedTable([columns] + records.map(\.cells))
    }

    static func endpoint(_ address: String, _ port: UInt16) -> String {
        address.contains(":") ? "[\(address)]:\(port)" : "\(address):\(port)"
    }

    static func duration(_ seconds: Double) -> String {
        let whole = Int(seconds)
        if whole < 120 { return "\(whole)s" }
        if whole < 7200 { return "\(whole / 60)m" }
        if whole < 172_800 { return "\(whole / 3600)h" }
        return "\(whole / 86400)d"
    }
}

extension FlowRecord {
    /// One `vpm flows --watch` line: `[NEW]`, `[UPDATE]` or `[DESTROY]`, then the flow's
    /// columns as `vpm flows` has them, each padded to a typical width.
    public static func eventLine(_ event: FlowEventRecord) -> String {
        let widths = [5, 11, 11, 21, 15, 7, 7, 8, 4, 4, 6, 8, 6, 8]
        let tag = "[\(event.event.uppercased())]".padding(toLength: 9, withPad: " ", startingAt: 0)
        let cells = zip(event.flow.cells, widths).map { cell, width in
            cell.count >= width ? cell : cell.padding(toLength: width, withPad: " ", startingAt: 0)
        }
        return tag + " " + cells.joined(separator: "  ").trimmingTrailingSpaces()
    }
}

private extension String {
    func trimmingTrailingSpaces() -> String {
        var text = self
        while text.last == " " { text.removeLast() }
        return text
    }
}
