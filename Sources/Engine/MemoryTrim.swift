#if canImport(Glibc)
import Glibc
#endif

/// glibc's malloc_trim(3): returns free pages of malloc's arenas to the kernel. Glibc's
/// Swift module leaves it out, so it is looked up once by name; on a libc without it this
/// does nothing.
enum MemoryTrim {
    private typealias Trim = @convention(c) (Int) -> Int32

    private static let function: Trim? = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "malloc_trim") else { return nil }
        return unsafeBitCast(symbol, to: Trim.self)
    }()

    static func release() { _ = function?(0) }
}
