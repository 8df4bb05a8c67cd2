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
