/// What the kernel does with a packet the engine's queue has no room for (`overload:` in
/// the configuration; `vpm run --fail-open` chooses `fail-open` too). Fail closed drops it:
/// TCP retransmits, nothing is delivered untranslated. Fail open accepts it untranslated,
/// as if vpm were not there: it reaches whatever listens on the initial port itself (or is
/// refused by the host), so it keeps unrelated traffic flowing under a flood at the price
/// of multiplexed connections' packets going astray — only for hosts where nothing else
/// listens on the initial ports.
public enum Overload: String, Sendable, Equatable, CaseIterable {
    case failClosed = "fail-closed"
    case failOpen = "fail-open"
}
