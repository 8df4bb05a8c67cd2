@testable import Engine
import Policy
import XCTest

final class RuleSetTests: XCTestCase {
    func testRulesForTheExampleConfiguration() throws {
        let rules = RuleSet.everyPacket(try Configuration.parse(Configuration.example))
        let ipv4 = rules.installCommands().filter { $0.first == "iptables" }.map { $0.dropFirst(2).joined(separator: " ") }
        XCTAssertEqual(ipv4, [
            "-t raw -N VPM-PREROUTING",
            "-t raw -N VPM-OUTPUT",
            "-t filter -N VPM-INPUT",
            "-t raw -A VPM-PREROUTING ! -i lo -p tcp --dport 20000:20999 -j DROP",
            "-t raw -A VPM-PREROUTING ! -i lo -p udp --dport 20000:20999 -j DROP",
            "-t raw -A VPM-PREROUTING ! -i lo -p tcp --dport 9000 -j CT --notrack",
            "-t raw -A VPM-PREROUTING ! -i lo -p tcp --dport 9000 -j NFQUEUE --queue-num 0",
            "-t raw -A VPM-PREROUTING ! -i lo -p udp --dport 5353 -j CT --notrack",
            "-t raw -A VPM-PREROUTING ! -i lo -p udp --dport 5353 -j NFQUEUE --queue-num 0",
            "-t raw -A VPM-OUTPUT ! -o lo -p tcp --sport 20000:20999 -j CT --notrack",
            "-t raw -A VPM-OUTPUT ! -o lo -p tcp --sport 20000:20999 -j NFQUEUE --queue-num 0",
            "-t raw -A VPM-OUTPUT ! -o lo -p udp --sport 20000:20999 -j CT --notrack",
            "-t raw -A VPM-OUTPUT ! -o lo -p udp --sport 20000:20999 -j NFQUEUE --queue-num 0",
            "-t filter -A VPM-INPUT -p tcp -m mark --mark 0x76706d01 -j REJECT --reject-with tcp-reset",
            "-t filter -A VPM-INPUT -p udp -m mark --mark 0x76706d01 -j REJECT",
            // Virtual ports: over lo only decided packets; only to sockets vpm bound, but for the
            // configuration's own instances (20017, 20018); a SYN that finds no full socket
            // (TIME_WAIT, a request socket) keeps 0x76706d03 and goes on to the kernel.
            "-t filter -A VPM-INPUT -i lo -p tcp --dport 20000:20999 -m mark ! --mark 0x50000000/0xf0000000 -j REJECT --reject-with tcp-reset",
            "-t filter -A VPM-INPUT -i lo -p udp --dport 20000:20999 -m mark ! --mark 0x50000000/0xf0000000 -j REJECT",
            "-t filter -A VPM-INPUT -p tcp --dport 20017 -j RETURN",
            "-t filter -A VPM-INPUT -p tcp --dport 20018 -j RETURN",
            "-t filter -A VPM-INPUT -p tcp --dport 20000:20999 --syn -j MARK --set-xmark 0x76706d03/0xffffffff",
            "-t filter -A VPM-INPUT -p tcp --dport 20000:20999 --syn -m socket --nowildcard --restore-skmark",
            "-t filter -A VPM-INPUT -p tcp --dport 20000:20999 --syn -m mark ! --mark 0x76706d02 -m mark ! --mark 0x76706d03 -j REJECT --reject-with tcp-reset",
            "-t filter -A VPM-INPUT -p udp --dport 20000:20999 -j MARK --set-xmark 0x76706d03/0xffffffff",
            "-t filter -A VPM-INPUT -p udp --dport 20000:20999 -m socket --nowildcard --restore-skmark",
            "-t filter -A VPM-INPUT -p udp --dport 20000:20999 -m mark ! --mark 0x76706d02 -m mark ! --mark 0x76706d03 -j REJECT",
            "-t raw -I PREROUTING 1 -j VPM-PREROUTING",
            "-t raw -I OUTPUT 1 -j VPM-OUTPUT",
            "-t filter -I INPUT 1 -j VPM-INPUT",
        ])
        XCTAssertEqual(rules.installCommands().count, 2 * ipv4.count, "the same rules for ip6tables")
    }

    /// Local mode, userspace datapath: loopback goes to the queue after the others (bound
    /// without GSO); the kernel datapath queues loopback's first packets with the rest.
    func testLocalModesLoopbackHasAQueueOfItsOwn() throws {
        let configuration = try Configuration.parse("""
            queue: 4
            queues: 2
            virtual-ports: 20000-20999
            ports: [9000]
            cooperative: {local: true}
            """)
        XCTAssertEqual(configuration.loopbackQueue, 6)
        let commands = RuleSet.everyPacket(configuration).installCommands().map { $0.dropFirst(2).joined(separator: " ") }
        XCTAssertTrue(commands.contains("-t raw -A VPM-OUTPUT -o lo -p tcp --dport 9000 -j NFQUEUE --queue-num 6"), "\(commands)")
        XCTAssertTrue(commands.contains("-t raw -A VPM-OUTPUT -o lo -p tcp --sport 20000:20999 -j NFQUEUE --queue-num 6"), "\(commands)")
        XCTAssertTrue(commands.contains("-t raw -A VPM-PREROUTING ! -i lo -p tcp --dport 9000 -j NFQUEUE --queue-balance 4:5"), "\(commands)")
        let kernel = RuleSet.firstPacket(configuration).installCommands().map { $0.dropFirst(2).joined(separator: " ") }
        XCTAssertTrue(kernel.contains { $0.contains("VPM-OUTPUT -o lo -p tcp --dport 9000") && $0.hasSuffix("--queue-balance 4:5") },
                      "the kernel datapath queues loopback's SYNs with the rest: \(kernel)")
        XCTAssertFalse(kernel.contains { $0.contains("--queue-num 6") }, "\(kernel)")
        XCTAssertNil(try Configuration.parse("virtual-ports: 20000-20999\nports: [9000]").loopbackQueue)
        XCTAssertThrowsError(try Configuration.parse("""
            queue: 65535
            virtual-ports: 20000-20999
            ports: [9000]
            cooperative: {local: true}
            """)) { error in
            XCTAssertTrue("\(error)".contains("local mode needs queue 65536 for loopback"), "\(error)")
        }
    }

    func testRemoveCoversEveryChainBothFamilies() {
        let commands = RuleSet.removeCommands().map { $0.joined(separator: " ") }
        for tool in ["iptables", "ip6tables"] {
            for (table, hook, chain) in RuleSet.hooks {
                XCTAssertTrue(commands.contains("\(tool) -w -t \(table) -D \(hook) -j \(chain)"))
                XCTAssertTrue(commands.contains("\(tool) -w -t \(table) -X \(chain)"))
            }
        }
    }

    func testKernelQueueStatisticsParse() {
        let text = "    0  12345     0 2 65535     3     7       42  1\n    1  222     0 2 65535     0     0       0  1\n"
        XCTAssertEqual(KernelQueueStatistics.parse(text, queue: 0), KernelQueueStatistics(queueTotal: 0, queueDropped: 3, userDropped: 7))
        XCTAssertNil(KernelQueueStatistics.parse(text, queue: 5))
    }
}
