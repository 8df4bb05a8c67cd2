import Control
import Decision
import FlowTable
import Foundation
import Packet
#if canImport(Glibc)
import Glibc
#endif

/// The userspace datapath's flow table on disk (`SOCKET.flows`, next to the control
/// socket), so that an engine restarted after a crash or an upgrade translates the
/// connections its predecessor carried instead of refusing their next segment. Written
/// atomically (a temporary file, fsync, rename) at every stop and, while running, each
/// second in which flows came, went or changed state; read at start, where flows idle past their state's
/// timeout (counting the time the file waited) are dropped. A file that does not read —
/// truncated, corrupt, another version — is reported and ignored.
/// The kernel datapath needs none: conntrack keeps its flows and the engine reads them back.
struct FlowSnapshot: Codable, Equatable {
    static let currentVersion = 1

    var version: Int
    /// Unix time of the write, in seconds.
    var savedAt: Double
    /// As `vpm flows --json` shows them: `idle` and `age` as of `savedAt`.
    var flows: [FlowRecord]

    /// Half-open TCP flows are left out: a restart loses nothing by it (the client
    /// retransmits its SYN, which the next engine decides, or negotiates, afresh), and under a
    /// SYN flood they are nearly the whole table — writing them each second would cost the
    /// engine tens of MB and the disk for nothing.
    init(flows: [Translation], now: UInt64, wallClock: Double = Date().timeIntervalSince1970) {
        version = Self.currentVersion
        savedAt = wallClock
        self.flows = flows.filter { $0.state != .opening }.map { FlowRecord($0, now: now) }
    }

    /// Writes atomically: readers see the old file or the whole new one, after a crash too.
    func write(to path: String) throws {
        try Self.write(savedAt: savedAt, to: path) { emit in
            for flow in flows { try emit(flow) }
        }
    }

    /// Writes `flows` as `init(flows:now:)` and `write(to:)` would, handed over `piece` at a
    /// time as `write(walk:…)` gets them from the table.
    static func write(flows: [Translation], now: UInt64, wallClock: Double = Date().timeIntervalSince1970,
                      to path: String, piece: Int = 4096) throws {
        try write(walk: { each in
            for start in stride(from: 0, to: flows.count, by: piece) {
                try each(Array(flows[start..<min(start + piece, flows.count)]))
            }
        }, now: now, wallClock: wallClock, to: path)
    }

    /// Writes the flows `walk` hands over a piece at a time (the table's own walk,
    /// `SharedFlowTable.walk`), without ever holding them all, as records or as a document:
    /// each record is encoded by hand (`FlowRecord.appendJSON`) into a buffer written out a
    /// megabyte at a time. A million flows make a file of about 250 MB; Foundation's
    /// encoder and a copy of the whole table, sorted, cost the engine seconds of CPU and
    /// hundreds of MB for each save.
    static func write(walk: (_ each: ([Translation]) throws -> Void) throws -> Void, now: UInt64,
                      wallClock: Double = Date().timeIntervalSince1970, to path: String) throws {
        try write(savedAt: wallClock, to: path) { emit in
            try withoutActuallyEscaping(emit) { emit in
                try walk { piece in
                    for flow in piece where flow.state != .opening { try emit(FlowRecord(flow, now: now)) }
                }
            }
        }
    }

    /// The file: `{"flows":[...],"savedAt":...,"version":1}` and a newline, the records
    /// handed to `emit` one at a time, through a temporary file, fsync and rename.
    private static func write(savedAt: Double, to path: String,
                              records: (_ emit: (FlowRecord) throws -> Void) throws -> Void) throws {
        let temporary = path + ".tmp"
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw SnapshotError("cannot write \(temporary): \(String(cString: strerror(errno)))") }
        func put(_ bytes: [UInt8]) throws {
            let failure: Int32? = bytes.withUnsafeBytes { bytes in
                var written = 0
                while written < bytes.count {
                    let count = Glibc.write(descriptor, bytes.baseAddress! + written, bytes.count - written)
                    if count < 0 {
                        if errno == EINTR { continue }
                        return errno
                    }
                    written += count
                }
                return nil
            }
            if let failure { throw SnapshotError("cannot write \(temporary): \(String(cString: strerror(failure)))") }
        }
        do {
            var buffer = Array(#"{"flows":["#.utf8)
            buffer.reserveCapacity(1 << 20 + 4096)
            var first = true
            try records { record in
                if !first { buffer.append(UInt8(ascii: ",")) }
                first = false
                record.appendJSON(to: &buffer)
                if buffer.count >= 1 << 20 {
                    try put(buffer)
                    buffer.removeAll(keepingCapacity: true)
                }
            }
            buffer += #"],"savedAt":"#.utf8
            buffer += try JSONEncoder().encode(savedAt)
            buffer += #","version":\#(currentVersion)}"#.utf8
            buffer.append(UInt8(ascii: "\n"))
            try put(buffer)
            guard fsync(descriptor) == 0 else { throw SnapshotError("cannot write \(temporary): \(String(cString: strerror(errno)))") }
        } catch {
            close(descriptor)
            unlink(temporary)
            throw error
        }
        close(descriptor)
        guard rename(temporary, path) == 0 else {
            let message = String(cString: strerror(errno))
            unlink(temporary)
            throw SnapshotError("cannot replace \(path): \(message)")
        }
    }

    /// The snapshot at `path`; nil when there is none. Throws when there is one that does
    /// not read.
    static func read(from path: String) throws -> FlowSnapshot? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw SnapshotError("cannot read \(path): \(error.localizedDescription)")
        }
        let snapshot: FlowSnapshot
        do { snapshot = try JSONDecoder().decode(FlowSnapshot.self, from: data) } catch {
            throw SnapshotError("\(path) is truncated or corrupt (\(data.count) bytes), ignored: \(error)")
        }
        guard snapshot.version == currentVersion else {
            throw SnapshotError("\(path) has version \(snapshot.version), this vpm reads \(currentVersion): ignored")
        }
        return snapshot
    }

    /// What a restore did.
    struct Restored: Equatable {
        var flows = 0
        /// Idle longer than their state's timeout by now.
        var stale = 0
        /// Records that do not describe a flow (an address, a name that does not parse).
        var invalid = 0
        /// The table was full.
        var refused = 0
    }

    /// Puts the flows that are still live into `table`, with their state, counters and the
    /// time they were last seen (`now` minus their idle time then and since).
    func restore(into table: SharedFlowTable, now: UInt64, wallClock: Double = Date().timeIntervalSince1970) -> Restored {
        var restored = Restored()
        let waited = max(0, wallClock - savedAt)
        let timeouts = table.withLock { $0.timeouts }
        // Least recently seen first: each state's list stays in last-seen order.
        for record in flows.sorted(by: { $0.idle > $1.idle }) {
            guard let transport = TransportProtocol(name: record.transport), let client = IPAddress(record.client),
                  let server = IPAddress(record.server), let aid = AID(record.aid), let mode = FlowMode(rawValue: record.mode),
                  let state = FlowState(rawValue: record.state), record.idle >= 0, record.age >= 0 else {
                restored.invalid += 1
                continue
            }
            let idle = UInt64(((record.idle + waited) * 1000).rounded())
            guard idle < timeouts.timeout(for: state) else {
                restored.stale += 1
                continue
            }
            let key = FlowKey(transport: transport, client: client, clientPort: record.clientPort, server: server,
                              initialPort: record.initialPort)
            let lastSeen = now > idle ? now - idle : 0
            let counters = FlowCounters(packetsToServer: record.packetsToServer, bytesToServer: record.bytesToServer,
                                        packetsToClient: record.packetsToClient, bytesToClient: record.bytesToClient)
            let inserted = table.withLock { table -> Bool in
                guard let handle = table.insert(key, virtualPort: record.virtualPort, aid: aid, mode: mode, peer: record.peer,
                                                now: lastSeen).handle else { return false }
                table.observe(handle, state: state, counters: counters, now: lastSeen)
                return true
            }
            if inserted { restored.flows += 1 } else { restored.refused += 1 }
        }
        return restored
    }
}

struct SnapshotError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
