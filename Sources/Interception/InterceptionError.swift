/// Why `vpm exec` could not start the program under interception.
public struct InterceptionError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}
