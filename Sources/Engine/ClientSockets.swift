import Packet
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
        var aid: String
        var registered: UInt64
    }

    static let capacity = 65_536
    static let lifetimeMilliseconds: UInt64 = 300_000

    private let registrations = Mutex<[Key: Registration]>([:])

    public init() {}

    func register(transport: TransportProtocol, address: IPAddress, port: UInt16, aid: String, now: UInt64) {
        registrations.withLock { registrations in
            if registrations.count >= Self.capacity {
                registrations = registrations.filter { now &- $0.value.registered < Self.lifetimeMilliseconds }
                if registrations.count >= Self.capacity, let oldest = registrations.min(by: { $0.value.registered < $1.value.registered }) {
                    registrations.removeValue(forKey: oldest.key)
                }
            }
            registrations[Key(transport: transport, address: address, port: port)] = Registration(aid: aid, registered: now)
        }
    }

    /// The AID of the program that owns this local socket, if it registered.
    func aid(transport: TransportProtocol, address: IPAddress, port: UInt16, now: UInt64) -> String? {
        registrations.withLock { registrations in
            let key = Key(transport: transport, address: address, port: port)
            guard let registration = registrations[key] else { return nil }
            guard now &- registration.registered < Self.lifetimeMilliseconds else {
                registrations.removeValue(forKey: key)
                return nil
            }
            return registration.aid
        }
    }
}
