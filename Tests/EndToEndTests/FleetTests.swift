import Control
import Foundation
import NetworkLab
import TestSupport
import XCTest

/// A fleet on a real three-member etcd cluster (authentication on), engines on three hosts
/// and no `peers` in any file: the engines find each other and derive their negotiation keys
/// from the directory; a client's connection reaches the host that serves its AID and no
/// other; a dead engine's entries expire with its lease; losing etcd keeps known peers
/// working; forged entries are refused, by etcd or by the peers.
final class FleetTests: XCTestCase {
    struct Fleet {
        var lab: NetworkLab
        var etcd: EtcdCluster
        var client: EngineRun
        var hosts: [EngineRun]
        var directory: String
        var vpm: String
    }

    static let etcdAddresses = ["198.18.0.1", "198.18.0.12", "198.18.0.13"]

    static func configuration(name: String, virtualPorts: String, directory: String) -> String {
        """
        virtual-ports: \(virtualPorts)
        ports: [9000]
        applications: {acme: {}, globex: {}}
        flows: {timeouts: {closed: 1m}}
        cooperative: {timeout: 3s}
        fleet:
          etcd: [\(etcdAddresses.map { "http://\($0):2379" }.joined(separator: ", "))]
          name: \(name)
          network: 198.18.0.0/16
          virtual-ports: 20000-29999
          lease: 3s
          key-file: \(directory)/\(name)/fleet.key
          user: vpm
          password-file: \(directory)/etcd-password
        """
    }

    private func withFleet(_ body: (Fleet) throws -> Void) throws {
        try Privileged.requireRoot()
        // 198.18.0.1 is the bridge's host (an etcd member, no engine: it bridges the others' frames).
        let lab = try NetworkLab(name: Privileged.labName("fleet"),
                                 clientAddresses: ["198.18.0.2", "198.18.0.3", "198.18.0.4", "198.18.0.12", "198.18.0.13"])
        defer { lab.tearDown() }
        let directory = Privileged.scratchDirectory("fleet")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try (EtcdCluster.password + "\n").write(toFile: "\(directory)/etcd-password", atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: "\(directory)/etcd-password")
        let etcd = try EtcdCluster(lab: lab, hosts: [lab.server, lab.clients[3], lab.clients[4]], directory: directory)
        let vpm = try Privileged.vpmExecutable()
        func engine(_ name: String, _ range: String, _ host: NetworkLab.Host) throws -> EngineRun {
            try Privileged.engine(lab: lab, vpmExecutable: vpm, directory: "\(directory)/\(name)",
                                  configuration: Self.configuration(name: name, virtualPorts: range, directory: directory), host: host)
        }
        let client = try engine("client", "21000-21999", lab.clients[0])
        let hosts = [try engine("host1", "22000-22999", lab.clients[1]), try engine("host2", "23000-23999", lab.clients[2])]
        for run in [client] + hosts { try run.start(["--log-level", "debug"]) }
        defer { for run in [client] + hosts { _ = run.stop() } }
        let fleet = Fleet(lab: lab, etcd: etcd, client: client, hosts: hosts, directory: directory, vpm: vpm)
        do { try body(fleet) } catch {
            XCTFail("\(error)\nclient log:\n\(client.log.suffix(6000))\n"
                    + hosts.map { "\($0.directory) log:\n\($0.log.suffix(6000))" }.joined(separator: "\n") + "\n" + etcd.logs)
            throw error
        }
    }

    private func statistics(_ engine: EngineRun) throws -> EngineStatistics {
        try JSONDecoder().decode(EngineStatistics.self, from: Data(try engine.stats(json: true).standardOutput.utf8))
    }

    /// An instance of `aid` on `host` that sends `AID.download` to each connection.
    private func startInstance(_ fleet: Fleet, _ host: EngineRun, aid: String) throws {
        let file = "\(fleet.directory)/\(aid).download"
        if !FileManager.default.fileExists(atPath: file) { try NetworkLab.makeRandomFile(file, count: 1 << 20) }
        _ = try host.exec(aid, ["socat", "TCP-LISTEN:9000,reuseaddr,fork", "SYSTEM:cat \(file)"], log: "\(aid).log")
        try NetworkLab.poll("\(aid) to register on \(host.directory)", timeout: 10) {
            let apps = (try? JSONDecoder().decode([AppRecord].self, from: Data(host.apps(json: true).standardOutput.utf8))) ?? []
            return apps.contains { $0.aid == aid && $0.virtualPort != 0 }
        }
    }

    /// `aid`'s client on the client host fetches from `address`:9000: the bytes' sha256, or
    /// nil when the connection failed (refused).
    private func fetch(_ fleet: Fleet, aid: String, from address: String, attempt: String) throws -> String? {
        let output = "\(fleet.directory)/fetched.\(aid).\(attempt)"
        let result = try fleet.client.execAndWait(aid, ["socat", "-u", "TCP:\(address):9000,connect-timeout=8", "CREATE:\(output)"], timeout: 20)
        guard result.status == 0, FileManager.default.fileExists(atPath: output) else { return nil }
        return try NetworkLab.sha256(output)
    }

    private func waitForView(_ fleet: Fleet, engines: Int, instances: Int, _ what: String, timeout: TimeInterval = 15) throws {
        var last: FleetRecord?
        do {
            try NetworkLab.poll("the client to see \(what)", timeout: timeout) {
                last = try? statistics(fleet.client).fleet
                guard let record = last else { return false }
                return record.connected && record.engines == engines && record.instances == instances
            }
        } catch {
            XCTFail("wanted \(engines) engines and \(instances) instances; the client last saw \(last.map { "\($0)" } ?? "no fleet record")")
            throw error
        }
    }

    func testAFleetWithoutPeersInAnyFileRoutesEachAIDToItsHostAndSurvivesLosingEtcd() throws {
        try withFleet { fleet in
            let lab = fleet.lab
            let host1 = lab.clients[1].address, host2 = lab.clients[2].address
            try startInstance(fleet, fleet.hosts[0], aid: "acme")
            try startInstance(fleet, fleet.hosts[1], aid: "globex")
            try waitForView(fleet, engines: 3, instances: 2, "three engines and two instances")
            let acme = try NetworkLab.sha256("\(fleet.directory)/acme.download")
            let globex = try NetworkLab.sha256("\(fleet.directory)/globex.download")

            // Each AID reaches its own host, with keys nobody configured.
            XCTAssertEqual(try fetch(fleet, aid: "acme", from: host1, attempt: "1"), acme)
            XCTAssertEqual(try fetch(fleet, aid: "globex", from: host2, attempt: "1"), globex)
            // Isolation: globex's client dialling acme's host is refused (host1 has no globex).
            XCTAssertNil(try fetch(fleet, aid: "globex", from: host1, attempt: "cross"))
            XCTAssertNil(try fetch(fleet, aid: "acme", from: host2, attempt: "cross"))
            let served = try statistics(fleet.hosts[0]).negotiations
            XCTAssertEqual(served["accepted"], 1, "\(served)")
            XCTAssertEqual(served["refused"], 1, "\(served)")

            // Writing to the directory needs etcd's credentials.
            let forged = try fleet.etcd.ctl(["put", "/vpm/engines/intruder", "{}"], authenticated: false)
            XCTAssertNotEqual(forged.status, 0, "etcd took an entry without credentials")
            XCTAssertTrue((forged.standardError + forged.standardOutput).contains("user name is empty")
                          || (forged.standardError + forged.standardOutput).contains("permission denied"),
                          forged.standardError + forged.standardOutput)

            // host1's engine dies: its entries expire with its lease (3 s), and acme's client
            // is refused at once instead of waiting for a dead engine.
            fleet.hosts[0].kill()
            try waitForView(fleet, engines: 2, instances: 1, "host1's entries expire", timeout: 10)
            let started = Date()
            XCTAssertNil(try fetch(fleet, aid: "acme", from: host1, attempt: "dead"))
            XCTAssertLessThan(Date().timeIntervalSince(started), 3, "a host with no live engine should be refused at once")

            // One etcd member stopped: host1's engine comes back and is learnt through the others.
            fleet.etcd.stop(0)
            // Meanwhile another host claims the name host1 (a live entry, another key): the
            // returning host1 does not overwrite it, says why, and joins once it is gone.
            let granted = try fleet.etcd.ctl(["lease", "grant", "60"])
            let impostorLease = try XCTUnwrap(granted.standardOutput.split(separator: " ").dropFirst().first.map(String.init),
                                              granted.standardOutput + granted.standardError)
            let impostor = try fleet.etcd.ctl(["put", "--lease=\(impostorLease)", "/vpm/engines/host1", """
                {"version":1,"name":"host1","addresses":["198.18.0.9"],"port":9901,"virtual-ports":"22000-22999","public-key":"\(Data(repeating: 7, count: 32).base64EncodedString())"}
                """])
            XCTAssertEqual(impostor.status, 0, impostor.standardError)
            // (acme's instance outlived its engine and registers with the new one.)
            try fleet.hosts[0].start(["--log-level", "debug"])
            try NetworkLab.poll("host1 to refuse to take a name another engine holds", timeout: 10) {
                (try? statistics(fleet.hosts[0]).fleet?.lastError)??.contains("holds the name 'host1'") == true
            }
            XCTAssertTrue(try fleet.hosts[0].stats().standardOutput.contains("give each host its own fleet: name"))
            XCTAssertEqual(try fleet.etcd.ctl(["lease", "revoke", impostorLease]).status, 0)
            try waitForView(fleet, engines: 3, instances: 2, "host1 and acme again, with one etcd member down", timeout: 20)
            XCTAssertEqual(try fetch(fleet, aid: "acme", from: host1, attempt: "2"), acme)

            // All of etcd stopped: known peers keep working, and the engine says what it lacks.
            fleet.etcd.stop(1)
            fleet.etcd.stop(2)
            try NetworkLab.poll("the client to notice etcd is gone", timeout: 15) {
                (try? statistics(fleet.client).fleet?.connected) == false
            }
            XCTAssertEqual(try fetch(fleet, aid: "globex", from: host2, attempt: "etcd-down"), globex)
            XCTAssertTrue(try fleet.client.stats().standardOutput.contains("etcd UNREACHABLE"))
            // etcd returns: the engines catch up.
            for member in 0..<3 { try fleet.etcd.start(member) }
            try waitForView(fleet, engines: 3, instances: 2, "the fleet again once etcd is back", timeout: 30)
            XCTAssertTrue(fleet.client.log.contains("etcd reachable again"))

            // An entry whose key does not match the engine's negotiation (written by someone
            // holding etcd's credentials): the peers' MACs do not verify, the connection is refused.
            let intruder = try fleet.etcd.ctl(["put", "/vpm/engines/host2", """
                {"version":1,"name":"host2","addresses":["\(host2)"],"port":9901,"virtual-ports":"23000-23999","public-key":"\(Data(repeating: 9, count: 32).base64EncodedString())"}
                """])
            XCTAssertEqual(intruder.status, 0, intruder.standardError)
            sleep(1)
            XCTAssertNil(try fetch(fleet, aid: "globex", from: host2, attempt: "forged-key"))
            XCTAssertGreaterThanOrEqual(try statistics(fleet.hosts[1]).negotiations["forged"] ?? 0, 1)
        }
    }
}
