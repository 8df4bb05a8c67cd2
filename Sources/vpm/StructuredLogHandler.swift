import Foundation
import Logging

/// `vpm run --log-format`: how log lines look on standard error.
/// - text: as swift-log's stream handler, `2026-12-02T17:42:31.123Z info vpm : key=value [Engine] message`;
/// - logfmt: `time=… level=info msg="engine running" key=value`, one event per line;
/// - json: one JSON object per line (`time`, `level`, `msg`, then the metadata);
/// - journal: the message and metadata with an sd-daemon(3) `<N>` priority prefix, which
///   journald turns into the entry's priority; the default when systemd runs vpm
///   (JOURNAL_STREAM names standard error).
struct StructuredLogHandler: LogHandler {
    enum Format: String, CaseIterable {
        case text, logfmt, json, journal

        /// journal when standard error is systemd's journal stream, else text.
        static func automatic(environment: [String: String] = ProcessInfo.processInfo.environment) -> Format {
            guard let stream = environment["JOURNAL_STREAM"] else { return .text }
            var status = stat()
            guard fstat(2, &status) == 0 else { return .text }
            return stream == "\(status.st_dev):\(status.st_ino)" ? .journal : .text
        }
    }

    let format: Format
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]

    init(format: Format) { self.format = format }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(level: Logger.Level, message: Logger.Message, metadata explicit: Logger.Metadata?, source: String,
             file: String, function: String, line: UInt) {
        let fields = self.metadata.merging(explicit ?? [:]) { $1 }.sorted { $0.key < $1.key }.map { ($0.key, "\($0.value)") }
        let text = Self.line(format: format, level: level, message: "\(message)", fields: fields, source: source, time: Date())
        FileHandle.standardError.write(Data((text + "\n").utf8))
    }

    /// One event as a line (without its newline).
    static func line(format: Format, level: Logger.Level, message: String, fields: [(String, String)], source: String,
                     time: Date) -> String {
        switch format {
        case .text:
            let pairs = fields.map { "\($0.0)=\($0.1)" }.joined(separator: " ")
            return "\(timestamp(time)) \(level) vpm :\(pairs.isEmpty ? "" : " " + pairs) [\(source)] \(message)"
        case .logfmt:
            return ([("time", timestamp(time)), ("level", level.rawValue), ("msg", message)] + fields)
                .map { "\($0.0)=\(logfmtValue($0.1))" }.joined(separator: " ")
        case .json:
            var object: [String: String] = ["time": timestamp(time), "level": level.rawValue, "msg": message]
            for (key, value) in fields where object[key] == nil { object[key] = value }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            return (try? String(decoding: encoder.encode(object), as: UTF8.self)) ?? #"{"msg":"unencodable log line"}"#
        case .journal:
            let pairs = fields.map { "\($0.0)=\(logfmtValue($0.1))" }.joined(separator: " ")
            return "<\(priority(level))>\(message)\(pairs.isEmpty ? "" : " " + pairs)"
        }
    }

    /// syslog priorities, as journald reads them.
    static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    static func logfmtValue(_ value: String) -> String {
        let plain = !value.isEmpty && !value.contains { $0 == " " || $0 == "=" || $0 == "\"" || $0 == "\\" || $0.isNewline }
        if plain { return value }
        let escaped = value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "\n", with: "\\n")
        return "\"\(escaped)\""
    }

    /// Made once: a formatter per log line was the handler's main cost. Formatting with a
    /// configured ISO8601DateFormatter is thread-safe.
    nonisolated(unsafe) private static let formatter: ISO8601DateFormatter = {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter
    }()

    static func timestamp(_ time: Date) -> String { formatter.string(from: time) }
}
