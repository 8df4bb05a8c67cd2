import ArgumentParser
import Control
import Decision
import Foundation

struct Stats: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show the running engine's counters.")

    @Option(help: "Control socket path.") var socket = ControlSocket.defaultPath
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        let response: ControlResponse
        do { response = try ControlSocket.send(ControlRequest(.stats), to: socket) } catch { throw Failure("\(error)") }
        if let error = response.error { throw Failure("the engine says: \(error)") }
        guard let statistics = response.statistics else { throw Failure("the engine sent no statistics") }
        if json {
            try printJSON(statistics)
            return
        }
        // The counters' own table: labels as people read them, in its order.
        var lines: [(String, String)] = EngineStatistics.counters.map { ($0.label, "\(statistics[keyPath: $0.value])") }
        lines += (statistics.reasons.isEmpty ? [] : [("dropped or refused, by reason", "")])
            + statistics.reasons.sorted { $0.key < $1.key }.map { ("  \(DropReason(identifier: $0.key)?.name ?? $0.key)", "\($0.value)") }
        lines += (statistics.reasonsInKernel.isEmpty ? [] : [("refused in the kernel, by reason", "")])
            + statistics.reasonsInKernel.sorted { $0.key < $1.key }.map { ("  \(DropReason(identifier: $0.key)?.name ?? $0.key)", "\($0.value)") }
        lines += (statistics.negotiations.isEmpty ? [] : [("negotiations served", Self.outcomes(statistics.negotiations))])
        lines.append(("first packet to verdict", Self.latency(statistics.firstVerdict)))
        if let fleet = statistics.fleet { lines.append(("fleet", fleet.summary(now: Int64(Date().timeIntervalSince1970)))) }
        let width = lines.map(\.0.count).max() ?? 0
        for (name, value) in lines { print(name.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + value) }
    }

    /// "median ≤ 100 µs, 99% ≤ 25 ms (12 connections)", or "no connection yet".
    static func latency(_ histogram: HistogramRecord) -> String {
        guard let median = histogram.upperBound(quantile: 0.5), let tail = histogram.upperBound(quantile: 0.99) else {
            return "no connection yet"
        }
        func bound(_ seconds: Double) -> String {
            seconds.isInfinite ? "> \(duration(histogram.bounds.last ?? 0))" : "≤ \(duration(seconds))"
        }
        return "median \(bound(median)), 99% \(bound(tail)) (\(histogram.count) connection\(histogram.count == 1 ? "" : "s"))"
    }

    static func duration(_ seconds: Double) -> String {
        if seconds < 0.001 { return "\(Int((seconds * 1_000_000).rounded())) µs" }
        if seconds < 1 { return "\(Int((seconds * 1000).rounded())) ms" }
        return "\(Int(seconds.rounded())) s"
    }

    /// "accepted 3, refused 1", or "none yet" for a negotiation server that served nothing.
    static func outcomes(_ counts: [String: UInt64]) -> String {
        let served = counts.sorted { $0.key < $1.key }.filter { $0.value > 0 }.map { "\($0.key) \($0.value)" }
        return served.isEmpty ? "none yet" : served.joined(separator: ", ")
    }
}
