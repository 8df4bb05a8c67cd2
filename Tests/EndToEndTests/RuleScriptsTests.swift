import Foundation
import NetworkLab
import TestSupport
import XCTest

/// The scripts in iptables/ install exactly what `vpm rules install` (and `vpm run`)
/// installs, and both removals leave the ruleset as it was.
final class RuleScriptsTests: XCTestCase {
    func testScriptsMatchTheEngineRules() throws {
        try Privileged.requireRoot()
        let lab = try NetworkLab(name: Privileged.labName("scripts"))
        defer { lab.tearDown() }
        let directory = Privileged.scratchDirectory("scripts")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let vpm = try Privileged.vpmExecutable()
        let scripts = Privileged.packageRoot.appendingPathComponent("iptables").path
        try """
            queue: 3
            queues: 3
            virtual-ports: 21000-21999
            ports: [9000, 7000/tcp, 5353/udp]
            applications:
              acme: {instances: {9000: 21017}}
            """.write(toFile: "\(directory)/vpm.yaml", atomically: true, encoding: .utf8)

        // Tables exist with an operator's own rule, as on a real host.
        for tool in ["iptables", "ip6tables"] {
            try lab.checked(lab.server, [tool, "-w", "-t", "raw", "-A", "PREROUTING", "-p", "udp", "--dport", "53", "-j", "CT", "--notrack"])
            try lab.checked(lab.server, [tool, "-w", "-t", "raw", "-A", "OUTPUT", "-p", "udp", "--sport", "53", "-j", "ACCEPT"])
            try lab.checked(lab.server, [tool, "-w", "-t", "filter", "-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT"])
        }
        let ruleset = { try lab.ruleset(lab.server) }
        let before = try ruleset()

        try lab.checked(lab.server, [vpm, "rules", "install", "--datapath", "userspace", "--config", "\(directory)/vpm.yaml"])
        let byEngine = try ruleset()
        // Three queues: the client port's bit 1 picks queue 3 or the pair 4-5.
        XCTAssertTrue(byEngine.contains("-A VPM-PREROUTING ! -i lo -p udp -m udp --dport 5353 -m u32 --u32 \"0x0>>0x16&0x3c@0x0>>0x11&0x1=0x0\" -j NFQUEUE --queue-num 3"), byEngine)
        XCTAssertTrue(byEngine.contains("-A VPM-PREROUTING ! -i lo -p udp -m udp --dport 5353 -j NFQUEUE --queue-balance 4:5"), byEngine)
        try lab.checked(lab.server, [vpm, "rules", "remove"])
        XCTAssertEqual(try ruleset(), before)

        try lab.checked(lab.server, ["sh", "\(scripts)/install.sh", "3:5", "21000:21999", "9000/tcp", "7000", "5353/udp", "--", "21017/tcp"])
        XCTAssertEqual(try ruleset(), byEngine, "iptables/install.sh differs from `vpm rules install`")
        try lab.checked(lab.server, ["sh", "\(scripts)/remove.sh"])
        XCTAssertEqual(try ruleset(), before)

        let printed = try Command.checked([vpm, "rules", "print", "--datapath", "userspace", "--config", "\(directory)/vpm.yaml"]).standardOutput
        XCTAssertTrue(printed.contains("iptables -w -t raw -A VPM-PREROUTING ! -i lo -p tcp --dport 7000 -m u32 --u32 '0>>22&0x3C@0>>17&0x1=0x0' -j NFQUEUE --queue-num 3"), printed)
        // The printed script is a shell script an operator can run as it is.
        try printed.write(toFile: "\(directory)/printed.sh", atomically: true, encoding: .utf8)
        try lab.checked(lab.server, ["sh", "\(directory)/printed.sh"])
        XCTAssertEqual(try ruleset(), byEngine, "`vpm rules print` differs from `vpm rules install`")
        try lab.checked(lab.server, ["sh", "\(scripts)/remove.sh"])
        XCTAssertEqual(try ruleset(), before)
    }
}
