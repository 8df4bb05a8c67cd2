public import FlowTable
public import Packet
import Synchronization

/// Outgoing sockets of programs under `vpm exec`, registered by the interception layer
/// right before their connect(): local address:port → AID. The local and cooperative
/// modes route a connection by its client's AID, found here when its SYN is queued.
/// Bounded: the oldest registrations go first, and each lives a few minutes at most.
public final class ClientSockets: Sendable {
    struct Key: Hashable {
        var transport: TransportProtocol
        var address: IPAddress
        var port: UInt16
    }

    struct Registration {
        var aid: AID
        var registered: UInt64
    }

    static let capacity = 65_536
    /// A registration is made right before connect(): it is used within moments or never.
    static let lifetimeMilliseconds: UInt64 = 30_000

    private let registrations = Mutex<[Key: Registration]>([:])

    public init() {}

    /// Returns false when the table is full of live registrations (the connection then
    /// goes out without an AID).
    @discardableResult
    public func register(transport: TransportProtocol, address: IPAddress, port: UInt16, aid: AID, now: UInt64) -> Bool {
        registrations.withLock { registrations in
            if registrations.count >= Self.capacity {
                // Rare (registrations are used up by their SYN): sweep the stale ones.
                registrations = registrations.filter { MonotonicClock.elapsed(since: $0.value.registered, now: now) < Self.lifetimeMilliseconds }
                guard registrations.count < Self.capacity else { return false }
            }
            registrations[Key(transport: transport, address: address, port: port)] = Registration(aid: aid, registered: now)
            return true
        }
    }

    /// The AID of the program that owns this local socket, if it registered. The
    /// registration is used up: a later connection from a reused port must register anew.
    func aid(transport: TransportProtocol, address: IPAddress, port: UInt16, now: UInt64) -> AID? {
        registrations.withLock { registrations in
            guard let registration = registrations.removeValue(forKey: Key(transport: transport, address: address, port: port)),
                  MonotonicClock.elapsed(since: registration.registered, now: now) < Self.lifetimeMilliseconds else { return nil }
            return registration.aid
        }
    }
}
