/// What a `bind()` under `vpm exec` gets when every virtual port of the range is taken.
public struct AllocationPolicy: Sendable, Equatable {
    public enum WhenExhausted: String, Sendable, Equatable, CaseIterable {
        /// The bind fails at once with EADDRINUSE.
        case fail
        /// The bind waits up to `waitTimeout` seconds for a port to be released.
        case wait
    }

    public var whenExhausted: WhenExhausted
    /// Seconds a waiting bind waits before it fails with EADDRINUSE.
    public var waitTimeout: UInt32

    public init(whenExhausted: WhenExhausted = .fail, waitTimeout: UInt32 = 10) {
        self.whenExhausted = whenExhausted
        self.waitTimeout = waitTimeout
    }

    public static let standard = AllocationPolicy()
}
