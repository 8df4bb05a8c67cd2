extension AppRecord {
    static let columns = ["AID", "PORT", "VIRTUAL", "ORIGIN", "CONNECTIONS", "PIDS", "COMMAND"]

    var cells: [String] {
        ["\(aid)", "\(initialPort)/\(transport)", "\(virtualPort)", draining == true ? "\(origin), draining" : origin, "\(connections)",
         processes.isEmpty ? "-" : processes.map { "\($0.pid)" }.joined(separator: ","),
         processes.first?.command ?? "-"]
    }

    /// Aligned columns for people: one instance per line.
    public static func table(_ records: [AppRecord]) -> String {
        alignedTable([columns] + records.map(\.cells))
    }
}

/// Rows of cells as aligned columns, two spaces apart; the last column is not padded.
func alignedTable(_ rows: [[String]]) -> String {
    guard let width = rows.first?.count else { return "" }
    var widths = [Int](repeating: 0, count: width)
    for row in rows { for (index, cell) in row.enumerated() { widths[index] = max(widths[index], cell.count) } }
    return rows.map { row in
        row.enumerated().map { index, cell in
            index == row.count - 1 ? cell : cell + String(repeating: " ", count: widths[index] - cell.count)
        }.joined(separator: "  ")
    }.joined(separator: "\n") + "\n"
}
