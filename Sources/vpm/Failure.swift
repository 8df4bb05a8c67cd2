import ArgumentParser
import Foundation

/// An error the user can act on: printed as `vpm: <message>` with exit code 1.
struct Failure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Diagnostics go to stderr, so stdout stays for data (tables, JSON).
func log(_ message: String) {
    FileHandle.standardError.write(Data("vpm: \(message)\n".utf8))
}

/// Prints a value as pretty, key-sorted JSON on stdout (`--json` output).
func printJSON<Value: Encodable>(_ value: Value) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}
