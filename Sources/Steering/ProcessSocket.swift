internal import CSteering
#if canImport(Glibc)
import Glibc
#endif

/// A copy of a socket another process holds, found by its inode (pidfd_getfd(2)): how the
/// engine puts an instance's listening socket in the socket map without keeping it. The
/// engine closes its copy at once: a socket map entry leaves with its socket, and a copy
/// kept here would keep a dead instance's socket, half-open connections and all, alive.
public enum ProcessSocket {
    /// A descriptor of the socket with inode `inode`, from the first of `pids` that holds it,
    /// or, when none does, from any process. Nil when no process holds it (or it closed).
    public static func copy(inode: UInt64, preferring pids: [Int32]) -> Int32? {
        let target = "socket:[\(inode)]"
        for pid in pids { if let found = copy(target, inode: inode, from: pid) { return found } }
        for pid in allProcesses() where !pids.contains(pid) {
            if let found = copy(target, inode: inode, from: pid) { return found }
        }
        return nil
    }

    /// A pidfd of process `pid` (pidfd_open(2)): readable once the process has exited, and
    /// never another process's, whatever pid is reused. Nil and errno when it cannot be had.
    public static func processHandle(_ pid: Int32) -> Int32? {
        let handle = vpm_steer_pidfd_open(pid)
        return handle >= 0 ? handle : nil
    }

    private static func copy(_ target: String, inode: UInt64, from pid: Int32) -> Int32? {
        guard let directory = opendir("/proc/\(pid)/fd") else { return nil }
        defer { closedir(directory) }
        var buffer = [CChar](repeating: 0, count: 64)
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
            guard let number = Int32(name) else { continue }
            let length = readlink("/proc/\(pid)/fd/\(name)", &buffer, buffer.count - 1)
            guard length > 0 else { continue }
            buffer[length] = 0
            guard String(cString: buffer) == target else { continue }
            let process = vpm_steer_pidfd_open(pid)
            guard process >= 0 else { return nil }
            defer { close(process) }
            let copy = vpm_steer_pidfd_getfd(process, number)
            guard copy >= 0 else { return nil }
            // The number may have been reused between readlink and the copy: check the inode.
            var status = stat()
            guard fstat(copy, &status) == 0, UInt64(status.st_ino) == inode else {
                close(copy)
                return nil
            }
            return copy
        }
        return nil
    }

    private static func allProcesses() -> [Int32] {
        guard let directory = opendir("/proc") else { return [] }
        defer { closedir(directory) }
        var pids: [Int32] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
            if let pid = Int32(name) { pids.append(pid) }
        }
        return pids
    }
}
