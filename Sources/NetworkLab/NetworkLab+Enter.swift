import Foundation

// setns(2) is not in Swift's Glibc module (it needs _GNU_SOURCE); it has a plain C ABI.
@_silgen_name("setns")
private func setns(_ descriptor: Int32, _ namespaceType: Int32) -> Int32
private let newNetworkNamespace: Int32 = 0x4000_0000  // CLONE_NEWNET

extension NetworkLab {
    /// Moves the calling thread (only this thread) into `host`'s network namespace, so a
    /// netlink socket it opens afterwards belongs to that host. Use a dedicated thread.
    public func enterOnCurrentThread(_ host: Host) throws {
        let descriptor = open("/var/run/netns/\(host.namespace)", O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw CommandError.failed("open netns \(host.namespace)", errno, "") }
        defer { close(descriptor) }
        guard setns(descriptor, newNetworkNamespace) == 0 else {
            throw CommandError.failed("setns \(host.namespace)", errno, String(cString: strerror(errno)))
        }
    }
}
