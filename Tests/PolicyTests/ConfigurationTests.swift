import Foundation
import XCTest
import FlowTable
import Packet
import Policy

final class ConfigurationTests: XCTestCase {
    func testParsesTheExample() throws {
        let configuration = try Configuration.parse(Configuration.example, file: "example.yaml")
        XCTAssertEqual(configuration.queue, 0)
        XCTAssertEqual(configuration.virtualPorts, 20000...20999)
        XCTAssertEqual(configuration.initialPorts, [InitialPort(port: 9000, transport: .tcp), InitialPort(port: 5353, transport: .udp)])
        XCTAssertEqual(configuration.applications.map(\.aid), ["acme", "globex"])
        XCTAssertEqual(configuration.applications[0].instances, [Instance(aid: "acme", initialPort: InitialPort(port: 9000), virtualPort: 20017)])
        XCTAssertEqual(configuration.applications[1].instances, [Instance(aid: "globex", initialPort: InitialPort(port: 9000), virtualPort: 20018)])
        XCTAssertEqual(configuration.applications[0].executables, [])
        XCTAssertEqual(configuration.applications[1].executables, ["/usr/sbin/nginx"])
        XCTAssertEqual(configuration.sources.map(\.match), [
            .prefix(IPAddress(198, 18, 1, 0), length: 120),
            .prefix(IPAddress(198, 18, 2, 0), length: 120),
            .address(IPAddress(198, 18, 3, 7)),
            .addressPort(IPAddress(198, 18, 4, 1), 5555),
        ])
        XCTAssertEqual(configuration.sources.map(\.aid), ["acme", "globex", "globex", "acme"])
        XCTAssertEqual(configuration.sources.map(\.line), [17, 19, 21, 23])
        XCTAssertEqual(configuration.flowCapacity, 262_144)
        XCTAssertEqual(configuration.timeouts, .standard)
    }

    func testDefaultsForOptionalKeys() throws {
        let configuration = try Configuration.parse("""
            virtual-ports: 20000-20099
            ports: [9000]
            """)
        XCTAssertEqual(configuration.queue, 0)
        XCTAssertEqual(configuration.applications.count, 0)
        XCTAssertEqual(configuration.sources.count, 0)
        XCTAssertEqual(configuration.flowCapacity, Configuration.defaultFlowCapacity)
        XCTAssertEqual(configuration.timeouts, .standard)
    }

    func testEveryKeyAndValueForm() throws {
        let configuration = try Configuration.parse("""
            queue: 3
            virtual-ports: "30000-30010"
            ports: [9000/tcp, 53/udp, 53/tcp]
            applications:
              "007":
                instances: {9000/tcp: 30001, 53/udp: 30002, 53: 30002}
              acme:
              globex:
                executables:
                  - /usr/bin/python3
            sources:
              - {from: "2001:db8::/32", aid: "007"}
              - from: "[2001:db9::1]:53"
                aid: acme
              - {from: 198.18.0.0/16, aid: globex}
            flows:
              capacity: 1000
              timeouts:
                opening: 5
                udp-stream: 1h
            """)
        XCTAssertEqual(configuration.queue, 3)
        XCTAssertEqual(configuration.virtualPorts, 30000...30010)
        XCTAssertEqual(configuration.initialPorts.map(\.description), ["9000/tcp", "53/udp", "53/tcp"])
        XCTAssertEqual(configuration.applications.map(\.aid), ["007", "acme", "globex"])
        XCTAssertEqual(configuration.applications[0].instances.map(\.description), ["007 9000/tcp -> 30001", "007 53/udp -> 30002", "007 53/tcp -> 30002"])
        XCTAssertEqual(configuration.applications[1].instances, [])
        XCTAssertEqual(configuration.applications[2].executables, ["/usr/bin/python3"])
        XCTAssertEqual(configuration.sources.map(\.match.description), ["2001:db8::/32", "[2001:db9::1]:53", "198.18.0.0/16"])
        XCTAssertEqual(configuration.flowCapacity, 1000)
        XCTAssertEqual(configuration.timeouts, FlowTimeouts(opening: 5_000, udpStream: 3_600_000), "seconds in the file, milliseconds in the table")
    }

    func testInstanceLookups() throws {
        let configuration = try Configuration.parse(Configuration.example)
        let tcp9000 = InitialPort(port: 9000)
        XCTAssertEqual(configuration.instance(aid: "acme", initialPort: tcp9000)?.virtualPort, 20017)
        XCTAssertEqual(configuration.instance(aid: "globex", initialPort: tcp9000)?.virtualPort, 20018)
        XCTAssertNil(configuration.instance(aid: "acme", initialPort: InitialPort(port: 5353, transport: .udp)))
        XCTAssertNil(configuration.instance(aid: "initech", initialPort: tcp9000))
        XCTAssertEqual(configuration.instance(virtualPort: 20018, transport: .tcp)?.aid, "globex")
        XCTAssertNil(configuration.instance(virtualPort: 20018, transport: .udp))
        XCTAssertNil(configuration.instance(virtualPort: 20019, transport: .tcp))
    }

    func testLoadReadsAFile() throws {
        let path = NSTemporaryDirectory() + "vpm-policy-\(UUID().uuidString).yaml"
        try Configuration.example.write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        XCTAssertEqual(try Configuration.load(path: path).applications.count, 2)
    }

    func testLoadNamesAMissingFile() {
        let path = "/nonexistent/vpm.yaml"
        XCTAssertThrowsError(try Configuration.load(path: path)) { error in
            let error = error as! ConfigurationError
            XCTAssertEqual(error.file, path)
            XCTAssertNil(error.line)
            XCTAssertTrue(error.description.hasPrefix("/nonexistent/vpm.yaml: cannot read the configuration: no such file"), error.description)
        }
    }

    func testLoadErrorsNameThePathAndLine() throws {
        let path = NSTemporaryDirectory() + "vpm-policy-\(UUID().uuidString).yaml"
        try "virtual-ports: 20000-20999\nports: [0]\n".write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        XCTAssertThrowsError(try Configuration.load(path: path)) { error in
            XCTAssertTrue("\(error)".hasPrefix("\(path):2:9: port 0 is not allowed"), "\(error)")
        }
    }
}
