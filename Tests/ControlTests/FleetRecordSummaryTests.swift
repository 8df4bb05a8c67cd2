import Control
import XCTest

/// `vpm stats`'s fleet line names each condition for what it is: etcd out of reach, etcd
/// refusing this engine (its user or password), and the name held by another engine.
final class FleetRecordSummaryTests: XCTestCase {
    private func record(connected: Bool, trouble: String? = nil, error: String? = nil) -> FleetRecord {
        FleetRecord(name: "host-1", connected: connected, lostSince: connected ? nil : 1_000, lastError: error, trouble: trouble,
                    engines: 3, instances: 2, ignored: 0, revision: 42)
    }

    func testConnected() {
        XCTAssertEqual(record(connected: true).summary(now: 1_010), "host-1: etcd connected, 3 engines, 2 instances (revision 42)")
    }

    func testUnreachable() {
        XCTAssertEqual(record(connected: false, trouble: "unreachable", error: "no member answered").summary(now: 1_010),
                       "host-1: etcd UNREACHABLE for 10 s (no member answered); using the last view: 3 engines, 2 instances")
    }

    func testRefusedIsNotUnreachable() {
        XCTAssertEqual(record(connected: false, trouble: "refused", error: "etcd refused user 'vpm': authentication failed").summary(now: 1_010),
                       "host-1: etcd REFUSED this engine for 10 s (etcd refused user 'vpm': authentication failed); using the last view: 3 engines, 2 instances")
    }

    func testNameTakenIsNotUnreachable() {
        XCTAssertEqual(record(connected: false, trouble: "name-taken", error: "another engine holds the name").summary(now: 1_010),
                       "host-1: NAME TAKEN by another engine for 10 s (another engine holds the name); using the last view: 3 engines, 2 instances")
    }
}
