import Packet
import Policy
import XCTest

/// `fleet:` (docs/fleet.md): its defaults, the peer it adds to the cooperative mode, and
/// mistakes that point at their line.
final class FleetSettingsTests: XCTestCase {
    func parse(_ fleet: String) throws -> Configuration {
        try Configuration.parse("virtual-ports: 22000-22999\nports: [9000]\n" + fleet)
    }

    func testDefaultsAndTheFleetPeer() throws {
        let configuration = try parse("fleet: {etcd: http://198.18.9.1:2379, network: 198.18.0.0/16}")
        let fleet = try XCTUnwrap(configuration.fleet)
        XCTAssertEqual(fleet.endpoints, ["http://198.18.9.1:2379"])
        XCTAssertEqual(fleet.prefix, "/vpm")
        XCTAssertEqual(fleet.leaseSeconds, 10)
        XCTAssertEqual(fleet.keyFile, "/var/lib/vpm/fleet.key")
        XCTAssertNil(fleet.name)
        XCTAssertEqual(fleet.virtualPorts, 22000...22999)
        // The fleet's network is one peer whose keys come from the directory, and the engine
        // serves negotiations on 9901 unless told otherwise.
        XCTAssertEqual(configuration.cooperation.peers.count, 1)
        XCTAssertTrue(configuration.cooperation.peers[0].fromFleet)
        XCTAssertEqual(configuration.cooperation.peers[0].key, [])
        XCTAssertEqual(configuration.cooperation.listeners, [Cooperation.Listener(port: 9901)])
        XCTAssertFalse(configuration.holdsKeys, "a fleet's keys are derived, not written in the file")
    }

    func testEverySetting() throws {
        let fleet = try XCTUnwrap(try parse("""
            cooperative: {listen: 9902}
            fleet:
              etcd: [https://198.18.9.1:2379, https://198.18.9.2:2379]
              network: 198.18.0.0/16
              name: host-1.eu
              prefix: /fleets/eu
              virtual-ports: 20000-29999
              addresses: [198.18.1.1]
              lease: 30s
              key-file: /etc/vpm/fleet.key
              user: vpm
              password-file: /etc/vpm/etcd-password
              tls: {ca: /etc/vpm/ca.pem, cert: /etc/vpm/vpm.pem, key: /etc/vpm/vpm-key.pem}
              service: [198.18.0.100, 198.18.0.101]
            """).fleet)
        XCTAssertEqual(fleet.endpoints.count, 2)
        XCTAssertEqual(fleet.name, "host-1.eu")
        XCTAssertEqual(fleet.prefix, "/fleets/eu")
        XCTAssertEqual(fleet.virtualPorts, 20000...29999)
        XCTAssertEqual(fleet.addresses, [IPAddress("198.18.1.1")!])
        XCTAssertEqual(fleet.leaseSeconds, 30)
        XCTAssertEqual(fleet.user, "vpm")
        XCTAssertEqual(fleet.passwordFile, "/etc/vpm/etcd-password")
        XCTAssertEqual(fleet.caFile, "/etc/vpm/ca.pem")
        XCTAssertEqual(fleet.certificateKeyFile, "/etc/vpm/vpm-key.pem")
        XCTAssertEqual(fleet.services, [IPAddress("198.18.0.100")!, IPAddress("198.18.0.101")!])
        XCTAssertEqual(try parse("fleet: {etcd: http://198.18.9.1:2379, network: 198.18.0.0/16, service: 198.18.0.100}").fleet?.services,
                       [IPAddress("198.18.0.100")!])
    }

    func testMistakesPointAtTheLine() {
        let network = "network: 198.18.0.0/16"
        for (fleet, words) in [
            ("fleet: {\(network)}", "'etcd'"),
            ("fleet: {etcd: 198.18.9.1:2379, \(network)}", "etcd's client URLs"),
            ("fleet: {etcd: [], \(network)}", "'etcd' is empty"),
            ("fleet: {etcd: http://198.18.9.1:2379}", "'network'"),
            ("fleet: {etcd: http://198.18.9.1:2379, network: 198.18.0.1:9000}", "prefix that holds its hosts"),
            ("fleet: {etcd: http://198.18.9.1:2379, \(network), virtual-ports: 22500-29999}", "must hold this host's virtual ports"),
            ("fleet: {etcd: http://198.18.9.1:2379, \(network), name: 'a b'}", "1 to 63 letters"),
            ("fleet: {etcd: http://198.18.9.1:2379, \(network), prefix: vpm/}", "starts with /"),
            ("fleet: {etcd: http://198.18.9.1:2379, \(network), addresses: [10.0.0.1]}", "outside the fleet's network"),
            ("fleet: {etcd: http://198.18.9.1:2379, \(network), lease: 1s}", "2s to 1h"),
            ("fleet: {etcd: http://198.18.9.1:2379, \(network), key-file: fleet.key}", "absolute path"),
            ("fleet: {etcd: http://198.18.9.1:2379, \(network), user: vpm}", "go together"),
            ("fleet: {etcd: http://198.18.9.1:2379, \(network), tls: {cert: /a.pem}}", "go together"),
            ("fleet: {etcd: http://198.18.9.1:2379, \(network), token: x}", "unknown key 'token'"),
            ("fleet: {etcd: http://198.18.9.1:2379, \(network), service: 10.0.0.100}", "outside the fleet's network"),
            ("fleet: {etcd: http://198.18.9.1:2379, \(network), service: svc.example}", "an address clients dial"),
            ("fleet: {etcd: http://198.18.9.1:2379, \(network), addresses: [198.18.1.1], service: 198.18.1.1}", "one of this host's fleet addresses"),
            ("""
             cooperative: {peers: [{network: 198.18.3.0/24, key: \(String(repeating: "ab", count: 32))}]}
             fleet: {etcd: http://198.18.9.1:2379, \(network)}
             """, "overlaps the peer"),
        ] {
            XCTAssertThrowsError(try parse(fleet), fleet) { error in
                let text = "\(error)"
                XCTAssertTrue(text.contains(words), "\(fleet): \(text)")
                XCTAssertTrue(text.contains(":3:") || text.contains(":4:") || text.contains(":5:"), "no line in: \(text)")
            }
        }
    }
}
