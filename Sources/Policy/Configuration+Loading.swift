internal import Foundation

extension Configuration {
    /// Parses configuration text; `file` names it in error messages.
    public static func parse(_ text: String, file: String = "<config>") throws(ConfigurationError) -> Configuration {
        try ConfigurationParser(file: file, text: text).parse()
    }

    /// Reads and parses the file at `path`; every error names the path.
    public static func load(path: String) throws(ConfigurationError) -> Configuration {
        // Checked up front because Foundation's read errors do not say which of these it was.
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw ConfigurationError(file: path, message: "cannot read the configuration: no such file (check the path; docs/configuration.md has an example to start from)")
        }
        guard !isDirectory.boolValue else {
            throw ConfigurationError(file: path, message: "cannot read the configuration: it is a directory, not a file")
        }
        guard FileManager.default.isReadableFile(atPath: path) else {
            throw ConfigurationError(file: path, message: "cannot read the configuration: permission denied (run as root or fix the file's mode)")
        }
        let data: Data
        do {
            // A file handle, read to its end: a pipe (/dev/stdin, <(…)) too, which
            // Data(contentsOf:) refuses.
            guard let handle = FileHandle(forReadingAtPath: path) else { throw CocoaError(.fileReadNoPermission) }
            defer { try? handle.close() }
            data = try handle.readToEnd() ?? Data()
        } catch {
            throw ConfigurationError(file: path, message: "cannot read the configuration: \(error.localizedDescription)")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ConfigurationError(file: path, message: "the configuration is not UTF-8 text")
        }
        return try parse(text, file: path)
    }
}
