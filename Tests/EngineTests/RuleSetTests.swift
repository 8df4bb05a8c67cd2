@testable import Engine
import Foundation
import Policy
import XCTest

final class RuleSetTests: XCTestCase {
    func testRulesForTheExampleConfiguration() throws {
        let rules = RuleSet.everyPacket(try Configuration.parse(Configuration.example.replacingOccurrences(of: "queues: auto", with: "queues: 1")))
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
        XCTAssertTrue(commands.contains("-t raw -A VPM-PREROUTING ! -i lo -p tcp --dport 9000 -m u32 --u32 0>>22&0x3C@0>>17&0x1=0x0 -j NFQUEUE --queue-num 4"), "\(commands)")
        XCTAssertTrue(commands.contains("-t raw -A VPM-PREROUTING ! -i lo -p tcp --dport 9000 -j NFQUEUE --queue-num 5"), "\(commands)")
        let kernel = RuleSet.firstPacket(configuration).installCommands().map { $0.dropFirst(2).joined(separator: " ") }
        XCTAssertTrue(kernel.contains { $0.contains("VPM-OUTPUT -o lo -p tcp --dport 9000") && $0.hasSuffix("0>>22&0x3C@0>>17&0x1=0x0 -j NFQUEUE --queue-num 4") },
                      "the kernel datapath queues loopback's SYNs with the rest: \(kernel)")
        XCTAssertTrue(kernel.contains { $0.contains("VPM-OUTPUT -o lo -p tcp --dport 9000") && $0.hasSuffix("--syn -m conntrack --ctstate NEW -m mark ! --mark 0x50000000/0xf0000000 -m mark ! --mark 0x76706d01 -j NFQUEUE --queue-num 5") },
                      "\(kernel)")
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

    /// Several queues: the client port (source on the way in, destination on the way back)
    /// picks the queue, so one client's flows spread and both directions meet on one queue.
    func testSeveralQueuesAreChosenByTheClientPort() throws {
        func commands(_ queues: String, _ tool: String = "iptables") throws -> [String] {
            let configuration = try Configuration.parse("queue: 10\nqueues: \(queues)\nvirtual-ports: 20000-20999\nports: [9000, 53/udp]")
            return RuleSet.everyPacket(configuration).installCommands()
                .filter { $0.first == tool && $0.contains("NFQUEUE") }.map { $0.dropFirst(5).joined(separator: " ") }
        }
        XCTAssertEqual(try commands("2"), [
            "VPM-PREROUTING ! -i lo -p tcp --dport 9000 -m u32 --u32 0>>22&0x3C@0>>17&0x1=0x0 -j NFQUEUE --queue-num 10",
            "VPM-PREROUTING ! -i lo -p tcp --dport 9000 -j NFQUEUE --queue-num 11",
            "VPM-PREROUTING ! -i lo -p udp --dport 53 -m u32 --u32 0>>22&0x3C@0>>17&0x1=0x0 -j NFQUEUE --queue-num 10",
            "VPM-PREROUTING ! -i lo -p udp --dport 53 -j NFQUEUE --queue-num 11",
            "VPM-OUTPUT ! -o lo -p tcp --sport 20000:20999 -m u32 --u32 0>>22&0x3C@0>>1&0x1=0x0 -j NFQUEUE --queue-num 10",
            "VPM-OUTPUT ! -o lo -p tcp --sport 20000:20999 -j NFQUEUE --queue-num 11",
            "VPM-OUTPUT ! -o lo -p udp --sport 20000:20999 -m u32 --u32 0>>22&0x3C@0>>1&0x1=0x0 -j NFQUEUE --queue-num 10",
            "VPM-OUTPUT ! -o lo -p udp --sport 20000:20999 -j NFQUEUE --queue-num 11",
        ])
        // IPv6: only where the transport header follows the fixed one, at byte 40.
        XCTAssertEqual(try commands("2", "ip6tables").filter { $0.contains("u32") }, [
            "VPM-PREROUTING ! -i lo -p tcp --dport 9000 -m u32 --u32 4>>8&0xFF=0x6&&40>>17&0x1=0x0 -j NFQUEUE --queue-num 10",
            "VPM-PREROUTING ! -i lo -p udp --dport 53 -m u32 --u32 4>>8&0xFF=0x11&&40>>17&0x1=0x0 -j NFQUEUE --queue-num 10",
            "VPM-OUTPUT ! -o lo -p tcp --sport 20000:20999 -m u32 --u32 4>>8&0xFF=0x6&&40>>1&0x1=0x0 -j NFQUEUE --queue-num 10",
            "VPM-OUTPUT ! -o lo -p udp --sport 20000:20999 -m u32 --u32 4>>8&0xFF=0x11&&40>>1&0x1=0x0 -j NFQUEUE --queue-num 10",
        ])
        // Three queues: two buckets, the second shared by address hash.
        XCTAssertEqual(try commands("3").prefix(2), [
            "VPM-PREROUTING ! -i lo -p tcp --dport 9000 -m u32 --u32 0>>22&0x3C@0>>17&0x1=0x0 -j NFQUEUE --queue-num 10",
            "VPM-PREROUTING ! -i lo -p tcp --dport 9000 -j NFQUEUE --queue-balance 11:12",
        ])
        // Twenty: eight buckets (three port bits), each with two or three queues.
        let twenty = try commands("20").filter { $0.hasPrefix("VPM-PREROUTING ! -i lo -p tcp") }
        XCTAssertEqual(twenty.count, 8)
        XCTAssertEqual(twenty.first, "VPM-PREROUTING ! -i lo -p tcp --dport 9000 -m u32 --u32 0>>22&0x3C@0>>17&0x7=0x0 -j NFQUEUE --queue-balance 10:11")
        XCTAssertEqual(twenty.last, "VPM-PREROUTING ! -i lo -p tcp --dport 9000 -j NFQUEUE --queue-balance 27:29")
        XCTAssertEqual(try commands("1"), try commands("1").filter { !$0.contains("u32") && $0.hasSuffix("--queue-num 10") })
        XCTAssertEqual(RuleSet.queueSplitProbe(queue: 10, port: 9000).joined(separator: " "),
                       "-p tcp --dport 9000 -m u32 --u32 0>>22&0x3C@0>>17&0x1=0x0 -j NFQUEUE --queue-num 10", "what vpm probe tries")

        let script = RuleSet.everyPacket(try Configuration.parse("queues: 2\nvirtual-ports: 20000-20999\nports: [9000]")).script()
        XCTAssertTrue(script.contains("-m u32 --u32 '0>>22&0x3C@0>>17&0x1=0x0' -j NFQUEUE --queue-num 0\n"), script)
        XCTAssertTrue(script.contains("iptables -w -t raw -A VPM-PREROUTING ! -i lo -p tcp --dport 9000 -j NFQUEUE --queue-num 1\n"), script)
    }

    /// Cooperative peers, both hosts' sides: the client port is the source of every request
    /// (their clients to our virtual ports, our clients to their initial port) and the
    /// destination of every answer (from their virtual ports, from ours).
    func testCooperativeRulesKeyEveryDirectionOnTheClientPort() throws {
        let configuration = try Configuration.parse("""
            queues: 2
            virtual-ports: 20000-20999
            ports: [9000]
            cooperative: {peers: [{network: 198.18.7.0/24, key: \(String(repeating: "ab", count: 32))}]}
            """)
        let source = "-m u32 --u32 0>>22&0x3C@0>>17&0x1=0x0 -j NFQUEUE --queue-num 0"
        let destination = "-m u32 --u32 0>>22&0x3C@0>>1&0x1=0x0 -j NFQUEUE --queue-num 0"
        let userspace = RuleSet.everyPacket(configuration).installCommands()
            .filter { $0.first == "iptables" && $0.contains("u32") }.map { $0.dropFirst(2).joined(separator: " ") }
        XCTAssertEqual(userspace, [
            "-t raw -A VPM-PREROUTING -s 198.18.7.0/24 -p tcp --dport 20000:20999 \(source)",
            "-t raw -A VPM-PREROUTING -s 198.18.7.0/24 -p tcp --sport 20000:20999 \(destination)",
            "-t raw -A VPM-OUTPUT -d 198.18.7.0/24 -p tcp --dport 9000 \(source)",
            "-t raw -A VPM-PREROUTING ! -i lo -p tcp --dport 9000 \(source)",
            "-t raw -A VPM-OUTPUT ! -o lo -p tcp --sport 20000:20999 \(destination)",
        ])
        let kernel = RuleSet.firstPacket(configuration).installCommands()
            .filter { $0.first == "iptables" && $0.contains("u32") }.map { $0.dropFirst(2).joined(separator: " ") }
        let undecided = "--syn -m conntrack --ctstate NEW -m mark ! --mark 0x50000000/0xf0000000 -m mark ! --mark 0x76706d01"
        XCTAssertEqual(kernel, [
            "-t nat -A VPM-PREROUTING -s 198.18.7.0/24 -p tcp --dport 20000:20999 \(undecided) \(source)",
            "-t nat -A VPM-OUTPUT -d 198.18.7.0/24 -p tcp --dport 9000 \(undecided) \(source)",
            "-t nat -A VPM-PREROUTING ! -i lo -p tcp --dport 9000 \(undecided) \(source)",
        ])
    }

    /// `queues` is one per CPU unless told (rounded down to a power of two, at most 64, no
    /// queue past 65535); anything but a count or `auto` is refused.
    func testQueuesDefaultToOnePerCPU() throws {
        let automatic = Configuration.automaticQueues(first: 0, local: false)
        XCTAssertEqual(try Configuration.parse("virtual-ports: 20000-20999\nports: [9000]").queues, automatic)
        XCTAssertEqual(try Configuration.parse("queues: auto\nvirtual-ports: 20000-20999\nports: [9000]").queues, automatic)
        XCTAssertLessThanOrEqual(automatic, ProcessInfo.processInfo.activeProcessorCount)
        for (processors, queues) in [(1, 1), (2, 2), (3, 2), (6, 4), (8, 8), (12, 8), (48, 32), (64, 64), (200, 64)] {
            XCTAssertEqual(Configuration.automaticQueues(first: 0, local: false, processors: processors), queues, "\(processors) CPUs")
        }
        XCTAssertEqual(Configuration.automaticQueues(first: 65533, local: false, processors: 8), 2, "65533-65534; 3 is not a power of two")
        XCTAssertEqual(Configuration.automaticQueues(first: 65532, local: true, processors: 8), 2, "65532-65533, loopback 65534")
        XCTAssertEqual(Configuration.automaticQueues(first: 65535, local: false, processors: 8), 1)
        XCTAssertEqual(try Configuration.parse("queue: 65535\nvirtual-ports: 20000-20999\nports: [9000]").queues, 1, "no queue past 65535")
        XCTAssertEqual(try Configuration.parse("queues: 3\nvirtual-ports: 20000-20999\nports: [9000]").queues, 3)
        XCTAssertThrowsError(try Configuration.parse("queues: many\nvirtual-ports: 20000-20999\nports: [9000]")) { error in
            XCTAssertTrue("\(error)".contains("'queues' must be auto (one per CPU) or a whole number from 1 to 64, found 'many'"), "\(error)")
        }
        XCTAssertThrowsError(try Configuration.parse("queues: 65\nvirtual-ports: 20000-20999\nports: [9000]"))
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
