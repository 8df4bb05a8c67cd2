/// Who is asking, as the kernel vouches for it (SO_PEERCRED, SO_PEERGROUPS) and with the
/// names the system gives those ids (absent when an id has no name).
public struct Caller: Sendable, Equatable {
    public var uid: UInt32
    /// The primary group and every supplementary group.
    public var gids: [UInt32]
    public var userName: String?
    public var groupNames: [String]

    public init(uid: UInt32, gids: [UInt32], userName: String? = nil, groupNames: [String] = []) {
        self.uid = uid
        self.gids = gids
        self.userName = userName
        self.groupNames = groupNames
    }

    /// `alice (uid 1001)` or `uid 64001`.
    public var description: String {
        userName.map { "\($0) (uid \(uid))" } ?? "uid \(uid)"
    }

    /// A configured user: a name or a numeric uid.
    func isUser(_ entry: String) -> Bool {
        entry == userName || UInt32(entry) == uid
    }

    /// A configured group: a name or a numeric gid.
    func isInGroup(_ entry: String) -> Bool {
        groupNames.contains(entry) || UInt32(entry).map { gids.contains($0) } == true
    }
}
