#if canImport(Glibc)
import Glibc
#endif

extension Configuration {
    /// Whether this configuration holds secrets: the cooperative peers' HMAC keys (a fleet's
    /// keys are derived, and its etcd password lives in a file of its own).
    public var holdsKeys: Bool { cooperation.peers.contains { !$0.fromFleet } }

    /// Why the file at `path`, holding keys, is exposed to other users — or nil when only
    /// root (or `owner`, the engine's user) can read and change it: no read or write for
    /// others, none for a group other than root's, owned by root or `owner` (default: us). A configuration
    /// without keys is never exposed. Symbolic links are followed, as `load` does.
    public func keysExposure(path: String, owner: UInt32? = nil) -> String? {
        guard holdsKeys else { return nil }
        let owner = owner ?? getuid()
        var status = stat()
        guard stat(path, &status) == 0 else { return nil }  // `load` has just read it
        let mode = status.st_mode & 0o777
        let octal = String(mode, radix: 8)
        let fix = "chmod 600 \(path) (or 640 with group root), or pass --allow-exposed-keys to run anyway"
        if mode & 0o006 != 0 {
            return "\(path) holds the cooperative keys and every user can \(mode & 0o004 != 0 ? "read" : "write") it (mode \(octal)): \(fix)"
        }
        if mode & 0o060 != 0 && status.st_gid != 0 {
            return "\(path) holds the cooperative keys and the members of group \(status.st_gid) can \(mode & 0o040 != 0 ? "read" : "write") it (mode \(octal)): \(fix)"
        }
        if status.st_uid != 0 && status.st_uid != owner {
            return "\(path) holds the cooperative keys and belongs to user \(status.st_uid), who can change it and read them: chown root \(path), or pass --allow-exposed-keys to run anyway"
        }
        return nil
    }
}
