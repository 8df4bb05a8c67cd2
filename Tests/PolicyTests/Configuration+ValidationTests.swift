import XCTest
import Policy

/// Bad files: each must fail with the line of the offending node and a message that says what is wrong.
final class ConfigurationValidationTests: XCTestCase {
    private func assertRejects(
        _ text: String,
        line expectedLine: Int,
        column expectedColumn: Int? = nil,
        _ phrases: String...,
        file: StaticString = #filePath,
        line testLine: UInt = #line
    ) {
        do {
            let configuration = try Configuration.parse(text, file: "vpm.yaml")
            XCTFail("accepted a bad configuration: \(configuration)", file: file, line: testLine)
        } catch {
            XCTAssertEqual(error.file, "vpm.yaml", file: file, line: testLine)
            XCTAssertEqual(error.line, expectedLine, "\(error)", file: file, line: testLine)
            if let expectedColumn {
                XCTAssertEqual(error.column, expectedColumn, "\(error)", file: file, line: testLine)
            }
            for phrase in phrases {
                XCTAssertTrue(error.message.contains(phrase), "'\(phrase)' not in: \(error)", file: file, line: testLine)
            }
        }
    }

    /// A valid head (lines 1-3) that tests extend.
    private let head = """
        virtual-ports: 20000-20999
        ports: [9000, 5353/udp]
        applications: {acme: {instances: {9000: 20017}}, globex: {instances: {9000: 20018}}}

        """

    // MARK: YAML and structure

    func testYAMLSyntaxError() {
        assertRejects("ports: [9000\nqueue: 1\n", line: 2, "YAML syntax error")
        assertRejects("ports:\n  - 9000\n bad: 1\n", line: 3, "YAML syntax error")
    }

    func testSecondDocument() {
        assertRejects("virtual-ports: 20000-20999\nports: [9000]\n---\nqueue: 1\n", line: 3, "a single YAML document")
    }

    func testTabIndentationGetsAHint() {
        assertRejects("ports:\n\t- 9000\n", line: 2, "tab")
    }

    func testEmptyFile() {
        assertRejects("", line: 1, "empty")
        assertRejects("# only a comment\n", line: 1, "empty")
    }

    func testRootMustBeAMapping() {
        assertRejects("- 9000\n", line: 1, "must be a mapping", "found a list")
    }

    func testUnknownTopLevelKeySuggestsTheRightOne() {
        assertRejects(head + "virtual-port: 1-2\n", line: 4, column: 1, "unknown key 'virtual-port'", "did you mean 'virtual-ports'?", "queue, queues, virtual-ports, ports, applications, sources, flows")
        assertRejects(head + "banana: 1\n", line: 4, "unknown key 'banana' in the configuration. The keys are: queue, queues")
    }

    func testMissingRequiredKeys() {
        assertRejects("queue: 0\nports: [9000]\n", line: 1, "missing the required key 'virtual-ports'")
        assertRejects("queue: 0\nvirtual-ports: 20000-20999\n", line: 1, "missing the required key 'ports'")
    }

    func testBadTypes() {
        assertRejects("virtual-ports: 20000-20999\nports: 9000\n", line: 2, "'ports' must be a list", "found '9000'")
        assertRejects("virtual-ports: [20000, 20999]\nports: [9000]\n", line: 1, "'virtual-ports' must be a single value", "found a list")
        assertRejects("queue: many\nvirtual-ports: 20000-20999\nports: [9000]\n", line: 1, "'queue' must be a whole number")
        assertRejects("queue:\nvirtual-ports: 20000-20999\nports: [9000]\n", line: 1, "has no value")
        assertRejects("virtual-ports: 20000-20999\nports: [9000]\napplications: [acme]\n", line: 3, "must be a mapping")
        assertRejects(head + "sources: {from: 198.18.1.0/24}\n", line: 4, "'sources' must be a list")
        assertRejects(head + "flows: {capacity: -1}\n", line: 4, "'capacity' must be a whole number")
    }

    func testQueueOutOfRange() {
        assertRejects("queue: 65536\nvirtual-ports: 20000-20999\nports: [9000]\n", line: 1, "out of range", "0 to 65535")
    }

    // MARK: Ports

    func testPortZeroAndTooLarge() {
        assertRejects("virtual-ports: 20000-20999\nports:\n  - 9000\n  - 0\n", line: 4, column: 5, "port 0 is not allowed")
        assertRejects("virtual-ports: 20000-20999\nports:\n  - 65536\n", line: 3, "port 65536 is out of range", "1-65535")
        assertRejects("virtual-ports: 20000-70000\nports: [9000]\n", line: 1, "port 70000 is out of range")
    }

    func testUnknownTransport() {
        assertRejects("virtual-ports: 20000-20999\nports: [9000/sctp]\n", line: 2, "unknown transport 'sctp'", "9000/udp")
    }

    func testEmptyPorts() {
        assertRejects("virtual-ports: 20000-20999\nports: []\n", line: 2, "'ports' is empty")
    }

    func testDuplicateInitialPort() {
        assertRejects("virtual-ports: 20000-20999\nports:\n  - 9000\n  - 5353/udp\n  - 9000/tcp\n", line: 5, "initial port 9000/tcp is listed twice", "first at line 3")
    }

    func testBadRanges() {
        assertRejects("ports: [9000]\nvirtual-ports: 20999-20000\n", line: 2, "reversed", "20000-20999")
        assertRejects("ports: [9000]\nvirtual-ports: 20000\n", line: 2, "must be a range", "20000-20999")
        assertRejects("ports: [9000]\nvirtual-ports: 20000-x\n", line: 2, "'x' is not a port number")
        assertRejects("ports: [9000, 5353/udp]\nvirtual-ports: 5000-10000\n", line: 2, "contains the initial port 9000/tcp")
    }

    func testVirtualPortOutsideTheRange() {
        assertRejects("""
            virtual-ports: 20000-20999
            ports: [9000]
            applications:
              acme:
                instances:
                  9000: 30017
            """, line: 6, column: 13, "virtual port 30017 of acme 9000/tcp is outside 'virtual-ports' 20000-20999")
    }

    func testVirtualPortZero() {
        assertRejects("virtual-ports: 20000-20999\nports: [9000]\napplications:\n  acme:\n    instances: {9000: 0}\n", line: 5, "port 0 is not allowed")
    }

    func testVirtualPortUsedTwice() {
        assertRejects("""
            virtual-ports: 20000-20999
            ports: [9000, 9001]
            applications:
              acme:
                instances:
                  9000: 20017
              globex:
                instances:
                  9001: 20017
            """, line: 9, "virtual port 20017/tcp is already used by acme 9000/tcp (line 6)")
    }

    func testInstanceOnAPortNotInPorts() {
        assertRejects("""
            virtual-ports: 20000-20999
            ports: [9000, 5353/udp]
            applications:
              acme:
                instances:
                  9000: 20017
                  8080: 20018
            """, line: 7, column: 7, "initial port 8080/tcp, which is not in 'ports' (9000/tcp, 5353/udp)")
        assertRejects("virtual-ports: 20000-20999\nports: [9000]\napplications:\n  acme:\n    instances: {9000/udp: 20017}\n", line: 5, "9000/udp, which is not in 'ports'")
    }

    func testTwoInstancesOnOneInitialPort() {
        assertRejects("virtual-ports: 20000-20999\nports: [9000]\napplications:\n  acme:\n    instances:\n      9000: 20017\n      9000/tcp: 20018\n", line: 7, "two instances on initial port 9000/tcp", "first at line 6")
    }

    // MARK: Applications

    func testBadAIDCharacters() {
        assertRejects("virtual-ports: 20000-20999\nports: [9000]\napplications:\n  ac me:\n    instances: {9000: 20017}\n", line: 4, "AID 'ac me' contains ' '", "letters")
        assertRejects("virtual-ports: 20000-20999\nports: [9000]\napplications:\n  \(String(repeating: "a", count: 65)):\n", line: 4, "the limit is 64")
    }

    func testDuplicateAIDKeys() {
        assertRejects("""
            virtual-ports: 20000-20999
            ports: [9000]
            applications:
              acme:
                instances: {9000: 20017}
              globex: {}
              acme:
                instances: {9000: 20018}
            """, line: 7, column: 3, "key 'acme' appears twice", "first at line 4")
        // Yams sees 123 and "123" as different keys (int and string); they are the same AID.
        assertRejects("virtual-ports: 20000-20999\nports: [9000]\napplications:\n  123: {}\n  \"123\": {}\n", line: 5, "AID '123' is defined twice", "first at line 4")
    }

    func testDuplicateTopLevelKey() {
        assertRejects("virtual-ports: 20000-20999\nports: [9000]\nports: [9001]\n", line: 3, "key 'ports' appears twice", "first at line 2")
    }

    func testUnknownApplicationKey() {
        assertRejects("virtual-ports: 20000-20999\nports: [9000]\napplications:\n  acme:\n    instance: {9000: 20017}\n", line: 5, "unknown key 'instance' in application 'acme'", "did you mean 'instances'?")
    }

    func testExecutables() {
        assertRejects("virtual-ports: 20000-20999\nports: [9000]\napplications:\n  acme:\n    executables: [nginx]\n", line: 5, "must be an absolute path")
        assertRejects("virtual-ports: 20000-20999\nports: [9000]\napplications:\n  acme:\n    executables: [/usr/sbin/nginx]\n  globex:\n    executables: [/usr/sbin/nginx]\n", line: 7, "already given to AID 'acme' (line 5)")
    }

    // MARK: Sources

    func testSourceNamingAnUnknownAID() {
        assertRejects(head + "sources:\n  - from: 198.18.1.0/24\n    aid: initech\n", line: 6, column: 10, "unknown AID 'initech'", "the AIDs are: acme, globex")
    }

    func testSourceWithoutApplications() {
        assertRejects("virtual-ports: 20000-20999\nports: [9000]\nsources:\n  - {from: 198.18.1.0/24, aid: acme}\n", line: 4, "unknown AID 'acme'", "add it under 'applications'")
    }

    func testSourceMissingKeys() {
        assertRejects(head + "sources:\n  - from: 198.18.1.0/24\n", line: 5, "a source is missing the required key 'aid'")
        assertRejects(head + "sources:\n  - aid: acme\n", line: 5, "missing the required key 'from'")
        assertRejects(head + "sources:\n  - from: 198.18.1.0/24\n    aid: acme\n    port: 5\n", line: 7, "unknown key 'port' in a source", "from, aid")
    }

    func testOverlappingPrefixes() {
        assertRejects(head + """
            sources:
              - from: 198.18.0.0/16
                aid: acme
              - from: 198.18.2.0/24
                aid: globex
            """, line: 7, column: 11, "source 198.18.2.0/24 overlaps 198.18.0.0/16 (line 5)", "'acme' and 'globex'")
    }

    func testAddressOverlapsAddressPort() {
        assertRejects(head + """
            sources:
              - from: 198.18.3.7
                aid: globex
              - from: 198.18.3.7:5555
                aid: acme
            """, line: 7, "source 198.18.3.7:5555 overlaps 198.18.3.7 (line 5)")
    }

    func testDuplicateSourceForOneAID() {
        assertRejects(head + "sources:\n  - {from: 198.18.3.7, aid: acme}\n  - {from: 198.18.3.7/32, aid: acme}\n", line: 6, "overlaps 198.18.3.7 (line 5)", "redundant")
    }

    func testIPv6SourcesOverlap() {
        assertRejects(head + "sources:\n  - {from: \"2001:db8::/32\", aid: acme}\n  - {from: \"[2001:db8::1]:5555\", aid: globex}\n", line: 6, "[2001:db8::1]:5555 overlaps 2001:db8::/32")
    }

    func testDisjointSourcesAreAccepted() throws {
        let configuration = try Configuration.parse(head + """
            sources:
              - {from: 198.18.3.7:5555, aid: acme}
              - {from: 198.18.3.7:5556, aid: globex}
              - {from: 198.18.1.0/24, aid: acme}
              - {from: "2001:db8::/32", aid: globex}
              - {from: 0.0.0.0/1, aid: acme}
            """)
        XCTAssertEqual(configuration.sources.count, 5)
    }

    func testHostBitsSetSuggestTheCorrectPrefix() {
        assertRejects(head + "sources:\n  - from: 198.18.1.5/24\n    aid: acme\n", line: 5, "host bits set", "did you mean 198.18.1.0/24?")
        assertRejects(head + "sources:\n  - from: \"2001:db8::1/32\"\n    aid: acme\n", line: 5, "did you mean 2001:db8::/32?")
    }

    func testPrefixLengthOutOfRange() {
        assertRejects(head + "sources:\n  - from: 198.18.1.0/33\n    aid: acme\n", line: 5, "prefix length '33'", "0-32")
        assertRejects(head + "sources:\n  - from: \"2001:db8::/129\"\n    aid: acme\n", line: 5, "0-128")
    }

    func testBadSourceAddress() {
        assertRejects(head + "sources:\n  - from: 198.18.1.300\n    aid: acme\n", line: 5, "is not an IPv4 or IPv6 address")
        assertRejects(head + "sources:\n  - from: 198.18.4.1:0\n    aid: acme\n", line: 5, "port 0 is not allowed")
    }

    func testUnquotedBracketedSourceGetsAHint() {
        assertRejects(head + "sources:\n  - from: [2001:db8::1]:5555\n    aid: acme\n", line: 5, "YAML syntax error", "quote a bracketed IPv6 source")
        assertRejects(head + "sources:\n  - from: [2001:db8::1]\n    aid: acme\n", line: 5, "found a list", "quote a bracketed IPv6 source")
    }

    func testSourceWithABadAID() {
        assertRejects(head + "sources:\n  - from: 198.18.1.0/24\n    aid: a/b\n", line: 6, "AID 'a/b' contains '/'")
    }

    // MARK: Flows

    func testBadDurations() {
        assertRejects(head + "flows:\n  timeouts:\n    opening: 30s\n    established: 5x\n", line: 7, column: 18, "timeout 'established'", "'5x' is not a duration", "30s, 10m, 2h, 5d")
        assertRejects(head + "flows:\n  timeouts:\n    closing: 0\n", line: 6, "at least 1s")
        assertRejects(head + "flows:\n  timeouts:\n    udp: 1.5h\n", line: 6, "'1.5h' is not a duration")
    }

    func testUnknownTimeoutKey() {
        assertRejects(head + "flows:\n  timeouts:\n    udp_stream: 3m\n", line: 6, "unknown key 'udp_stream'", "did you mean 'udp-stream'?")
    }

    func testZeroCapacity() {
        assertRejects(head + "flows:\n  capacity: 0\n", line: 5, "'capacity' is 0, out of range")
    }
}
