/// A reference to one flow of one `FlowTable`: its slot and the slot's generation, so a
/// handle kept past the flow's removal is recognised as stale instead of reaching the
/// slot's next tenant.
public struct FlowHandle: Hashable, Sendable {
    let slot: Int32
    let generation: UInt32

    init(slot: Int32, generation: UInt32) {
        self.slot = slot
        self.generation = generation
    }
}

extension FlowHandle: CustomStringConvertible {
    public var description: String { "flow \(slot)#\(generation)" }
}
