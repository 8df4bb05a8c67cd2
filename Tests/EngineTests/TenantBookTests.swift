import Decision
@testable import Engine
import FlowTable
import Policy
import Synchronization
import XCTest

/// Tenants without processes: members are watched through a stand-in that the test ends.
final class TenantBookTests: XCTestCase {
    /// Each open gives a new handle; `kill` ends the process behind every handle of a pid
    /// open now (a later open of the same pid is a new process).
    final class Processes: Sendable {
        private let state = Mutex<(next: Int32, pids: [Int32: Int32], dead: Set<Int32>, open: Set<Int32>)>((1000, [:], [], []))
        func kill(_ pid: Int32) {
            state.withLock { state in for (handle, owner) in state.pids where owner == pid { state.dead.insert(handle) } }
        }
        var openPids: Set<Int32> { state.withLock { state in Set(state.open.compactMap { state.pids[$0] }) } }
        var watcher: TenantBook.Watcher {
            TenantBook.Watcher(open: { pid in self.state.withLock { state in
                                   state.next += 1
                                   state.pids[state.next] = pid
                                   state.open.insert(state.next)
                                   return state.next } },
                               isAlive: { handle in !self.state.withLock { $0.dead.contains(handle) } },
                               close: { handle in _ = self.state.withLock { $0.open.remove(handle) } })
        }
    }

    let alice = Caller(uid: 1001, gids: [1001], userName: "alice")
    let bob = Caller(uid: 1002, gids: [1002], userName: "bob")

    func book(limit: Int = 2, processes: Processes, names: [String] = ["00000001", "00000002", "00000003", "00000004"]) -> TenantBook {
        let next = Mutex(names)
        // Two configured applications hold slots 1 and 2.
        return TenantBook(settings: TenantSettings(users: ["alice"], limit: limit, ports: [InitialPort(port: 6379)]),
                          slots: AIDSlots(slots: ["acme": 1, "globex": 2]),
                          watcher: processes.watcher, name: { next.withLock { $0.isEmpty ? "ffffffff" : $0.removeFirst() } })
    }

    func testATenantLivesWhileAMemberDoesAndItsSlotWaitsForItsFlows() {
        let processes = Processes()
        let book = book(processes: processes)
        XCTAssertEqual(book.make(caller: alice, pid: 100, configured: { _ in false }), .joined("tenant-00000001"))
        XCTAssertEqual(book.join("tenant-00000001", caller: alice, pid: 101, surroundings: .inside("tenant-00000001")), .joined("tenant-00000001"))
        XCTAssertEqual(book.slots.all["tenant-00000001"], 3)
        XCTAssertTrue(book.isMember(101, of: "tenant-00000001"))
        XCTAssertFalse(book.isMember(102, of: "tenant-00000001"))

        processes.kill(100)
        XCTAssertEqual(book.sweep(), [], "a member is left")
        processes.kill(101)
        XCTAssertEqual(book.sweep(), ["tenant-00000001"])
        XCTAssertFalse(book.contains("tenant-00000001"))
        XCTAssertEqual(processes.openPids, [], "every handle closed")

        // Its slot stays taken while a flow of it is left.
        XCTAssertEqual(book.make(caller: alice, pid: 200, configured: { _ in false }), .joined("tenant-00000002"))
        XCTAssertEqual(book.slots.all["tenant-00000002"], 4)
        book.slots.sweep { $0 == "tenant-00000001" }
        XCTAssertEqual(book.slots.aids[3], "tenant-00000001", "cooling")
        book.slots.sweep { _ in false }
        XCTAssertEqual(book.sweep(), [])
        XCTAssertEqual(book.make(caller: alice, pid: 201, configured: { _ in false }), .joined("tenant-00000003"))
        XCTAssertEqual(book.slots.all["tenant-00000003"], 3, "freed once no flow is left")
    }

    func testRefusalsNameTheirRule() {
        let processes = Processes()
        let book = book(limit: 1, processes: processes)
        guard case .refused(let stranger) = book.make(caller: bob, pid: 300, configured: { _ in false }) else { return XCTFail() }
        XCTAssertTrue(stranger.contains("bob (uid 1002) may not make tenants"), stranger)
        XCTAssertEqual(book.make(caller: alice, pid: 100, configured: { _ in false }), .joined("tenant-00000001"))
        guard case .refused(let full) = book.make(caller: alice, pid: 101, configured: { _ in false }) else { return XCTFail() }
        XCTAssertTrue(full.contains("the most tenants.limit allows (1)"), full)
        guard case .refused(let foreign) = book.join("tenant-00000001", caller: bob, pid: 301, surroundings: .outside) else { return XCTFail() }
        XCTAssertTrue(foreign.contains("belongs to uid 1001"), foreign)
        guard case .refused(let crossing) = book.join("tenant-00000001", caller: Caller(uid: 0, gids: [0]), pid: 400, surroundings: .inside("tenant-0000000f")) else { return XCTFail() }
        XCTAssertTrue(crossing.contains("a process of tenant tenant-0000000f may not join tenant tenant-00000001"), crossing)
        guard case .refused(let unknown) = book.join("tenant-0000000e", caller: alice, pid: 102, surroundings: .outside) else { return XCTFail() }
        XCTAssertTrue(unknown.contains("neither in the configuration nor a live tenant"), unknown)
        XCTAssertEqual(processes.openPids, [100], "refused requests keep no handle")
    }

    func testANameAConfiguredApplicationHasIsNotGiven() {
        let book = book(processes: Processes())
        XCTAssertEqual(book.make(caller: alice, pid: 100, configured: { $0 == "tenant-00000001" }), .joined("tenant-00000002"))
    }

    /// The nearest live member up the parent chain names the tenant a process is in; a
    /// chain that breaks is unknown (a join is refused), not outside.
    func testATenantIsFoundUpTheParentChain() {
        let processes = Processes()
        let book = book(processes: processes)
        _ = book.make(caller: alice, pid: 100, configured: { _ in false })
        let parents: [Int32: Int32] = [500: 400, 400: 100, 100: 1, 600: 1, 700: 650]
        XCTAssertEqual(book.surroundings(of: 500, parent: { parents[$0] }), .inside("tenant-00000001"))
        XCTAssertEqual(book.surroundings(of: 600, parent: { parents[$0] }), .outside)
        XCTAssertEqual(book.surroundings(of: 700, parent: { parents[$0] }), .unknown, "650 exited while read")
        guard case .refused(let unknown) = book.join("tenant-00000001", caller: alice, pid: 700, surroundings: .unknown) else { return XCTFail() }
        XCTAssertTrue(unknown.contains("cannot tell whether process 700 runs inside another tenant"), unknown)
        // A member that exited, not swept yet, is nobody's ancestor and no member.
        processes.kill(100)
        XCTAssertEqual(book.surroundings(of: 500, parent: { parents[$0] }), .outside)
        XCTAssertFalse(book.isMember(100, of: "tenant-00000001"))
    }

    /// A pid reused before the sweep: the new process joins as itself, and the old one's
    /// membership goes.
    func testAReusedPidOfAnUnsweptMemberIsANewProcess() {
        let processes = Processes()
        let book = book(processes: processes)
        _ = book.make(caller: alice, pid: 100, configured: { _ in false })
        _ = book.make(caller: alice, pid: 200, configured: { _ in false })
        processes.kill(100)
        XCTAssertFalse(book.isMember(100, of: "tenant-00000001"), "exited, not swept yet")
        XCTAssertEqual(book.join("tenant-00000002", caller: alice, pid: 100, surroundings: .outside), .joined("tenant-00000002"))
        XCTAssertTrue(book.isMember(100, of: "tenant-00000002"))
        XCTAssertFalse(book.isMember(100, of: "tenant-00000001"))
        XCTAssertEqual(book.sweep(), ["tenant-00000001"], "its only member was the old process")
        XCTAssertTrue(book.contains("tenant-00000002"))
    }

    /// Applications a reload adds take free slots; removed ones' slots cool; a restarted
    /// tenant claims the slot its flows' marks name.
    func testSlotsComeAndGoWithApplications() {
        let slots = AIDSlots(slots: ["acme": 1, "globex": 2, "initech": 3])
        XCTAssertEqual(slots.all, ["acme": 1, "globex": 2, "initech": 3])
        slots.release("globex")
        XCTAssertEqual(slots.take("hooli"), 4, "globex's slot cools")
        XCTAssertFalse(slots.claim(2, for: "piper"))
        slots.sweep { _ in false }
        XCTAssertEqual(slots.take("piper"), 2)
        XCTAssertEqual(slots.take("piper"), 2, "an AID keeps its slot")
        XCTAssertTrue(slots.claim(7, for: "tenant-00000009"))
        XCTAssertFalse(slots.claim(7, for: "tenant-0000000a"))
        XCTAssertEqual(slots.aids[7], "tenant-00000009")
    }
}
