/// Why one piece of text (a port, a source, a duration) could not be read. The value parsers
/// know nothing about YAML; the configuration parser adds the file, line and column.
struct InvalidValue: Error {
    let message: String

    init(_ message: String) {
        self.message = message
    }
}
