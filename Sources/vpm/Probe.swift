import ArgumentParser
import Engine
import Foundation
import Netfilter
import HostCommand
import NetworkLab

struct Probe: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check that this host can run vpm, and say how to fix what is missing.",
        discussion: """
            Checks privileges, the iptables NFQUEUE target and u32 match (in a throwaway network namespace, \
            so no rule of this host is touched), the nft queue expression, the kernel datapath \
            (nft NAT with a mark map, conntrack's netlink interface), and binding a queue. \
            Exits 0 when vpm can run, 1 when something must be fixed first.
            """)

    @Option(help: "Queue number to try binding.") var queue: UInt16 = 0
    @Flag(help: "Print the checks as JSON (canRun, and each check's status, name and detail).") var json = false

    struct Report: Encodable {
        var canRun: Bool
        var checks: [HostProbe.Result]
    }

    func run() throws {
        let results = HostProbe(queue: queue).run()
        let failed = results.filter { $0.status == .fail }.count
        if json {
            try printJSON(Report(canRun: failed == 0, checks: results))
            if failed > 0 { throw ExitCode.failure }
            return
        }
        for result in results { print(result.line) }
        if failed == 0 {
            print("vpm can run on this host.")
        } else {
            throw Failure("\(failed) check\(failed == 1 ? "" : "s") failed; fix \(failed == 1 ? "it" : "them") and run `vpm probe` again")
        }
    }
}

/// The checks behind `vpm probe` (and the first step of `vpm demo`).
struct HostProbe {
    struct Result: Encodable {
        enum Status: String, Encodable { case ok, fail, info }
        var status: Status
        var name: String
        var detail: String

        var line: String {
            "  \((status == .fail ? "FAIL" : status.rawValue).padding(toLength: 5, withPad: " ", startingAt: 0)) "
                + "\(name.padding(toLength: 16, withPad: " ", startingAt: 0)) \(detail)"
        }
    }

    var queue: UInt16

    func run() -> [Result] {
        let privileged = privileges()
        var results = [privileged]
        results.append(tool("iptables", package: "iptables", versionArgument: "--version"))
        results.append(tool("ip", package: "iproute2", versionArgument: "-V"))
        guard privileged.status == .ok else { return results }
        results.append(contentsOf: namespaceChecks())
        results.append(queueBinding())
        return results
    }

    private func privileges() -> Result {
        if geteuid() == 0 { return Result(status: .ok, name: "privileges", detail: "running as root") }
        if NetfilterQueue.hasNetworkAdministration() {
            return Result(status: .ok, name: "privileges", detail: "CAP_NET_ADMIN is effective")
        }
        return Result(status: .fail, name: "privileges",
                      detail: "not root and no CAP_NET_ADMIN: run as root (sudo vpm ...)")
    }

    private func tool(_ name: String, package: String, versionArgument: String) -> Result {
        guard let output = try? Command.run([name, versionArgument], timeout: 10), output.status == 0 else {
            return Result(status: .fail, name: name, detail: "not found: apt-get install \(package)")
        }
        let version = (output.standardOutput + output.standardError)
            .split(separator: "\n").first.map(String.init) ?? ""
        return Result(status: .ok, name: name, detail: version)
    }

    /// Rule checks run in a namespace made for the purpose, so the host's rules stay untouched.
    private func namespaceChecks() -> [Result] {
        let namespace = "vpm-probe-\(getpid())"
        defer { NetworkLab.removeStale(prefix: namespace) }
        guard (try? Command.checked(["ip", "netns", "add", namespace], timeout: 10)) != nil else {
            return [Result(status: .fail, name: "namespaces", detail: "`ip netns add` failed: is this a container without CAP_SYS_ADMIN?")]
        }
        let inside = ["ip", "netns", "exec", namespace]
        var results: [Result] = []
        let rule = inside + ["iptables", "-w", "-t", "raw", "-A", "OUTPUT", "-p", "tcp", "--dport", "9",
                             "-j", "NFQUEUE", "--queue-num", "\(queue)"]
        if let output = try? Command.run(rule, timeout: 10), output.status == 0 {
            results.append(Result(status: .ok, name: "NFQUEUE target", detail: "iptables accepts -j NFQUEUE (xt_NFQUEUE)"))
        } else {
            results.append(Result(status: .fail, name: "NFQUEUE target",
                                  detail: "iptables refused -j NFQUEUE: load it with `modprobe xt_NFQUEUE` (kernel needs CONFIG_NETFILTER_XT_TARGET_NFQUEUE)"))
        }
        let split = inside + ["iptables", "-w", "-t", "raw", "-A", "OUTPUT"] + RuleSet.queueSplitProbe(queue: queue, port: 9)
        if let output = try? Command.run(split, timeout: 10), output.status == 0 {
            results.append(Result(status: .ok, name: "u32 match", detail: "iptables accepts -m u32 (xt_u32): several queues can split flows by client port"))
        } else {
            results.append(Result(status: .fail, name: "u32 match",
                                  detail: "iptables refused -m u32: load it with `modprobe xt_u32` (CONFIG_NETFILTER_XT_MATCH_U32), or set `queues: 1`"))
        }
        results.append(nftQueue(inside))
        results.append(kernelDatapath(inside))
        results.append(socketDatapath())
        return results
    }

    /// vpm does not need nft's queue expression, but says whether the kernel has it.
    private func nftQueue(_ inside: [String]) -> Result {
        guard Command.exists("nft") else {
            return Result(status: .info, name: "nft queue", detail: "nft not installed; vpm uses the iptables NFQUEUE target")
        }
        let script = "add table inet vpmprobe; add chain inet vpmprobe out { type filter hook output priority 0; }; add rule inet vpmprobe out tcp dport 9 queue num \(queue)"
        if let output = try? Command.run(inside + ["nft", script], timeout: 10), output.status == 0 {
            return Result(status: .info, name: "nft queue", detail: "available; vpm uses the iptables NFQUEUE target")
        }
        return Result(status: .info, name: "nft queue",
                      detail: "not available (CONFIG_NFT_QUEUE off); vpm uses the iptables NFQUEUE target")
    }

    /// `vpm run --datapath kernel` needs nft NAT with maps and ctnetlink; without them the
    /// engine falls back to the userspace datapath.
    private func kernelDatapath(_ inside: [String]) -> Result {
        if let reason = Datapath.kernelUnavailableReason(prefix: inside) {
            return Result(status: .info, name: "kernel datapath", detail: "not available (\(reason)); vpm run --datapath kernel falls back to userspace")
        }
        return Result(status: .ok, name: "kernel datapath", detail: "available: nft NAT with a mark map, ct mark, conntrack netlink")
    }

    /// `vpm run --datapath socket` needs the kernel datapath and a kernel that loads the
    /// sk_lookup program (Linux 5.17 or later, BPF, sockmap); without it the engine falls
    /// back to the kernel datapath.
    private func socketDatapath() -> Result {
        if let reason = Datapath.socketUnavailableReason() {
            return Result(status: .info, name: "socket datapath", detail: "not available (\(reason)); vpm run --datapath socket falls back to kernel")
        }
        return Result(status: .ok, name: "socket datapath", detail: "available: the kernel loads the sk_lookup program (BPF, LPM trie, sockmap)")
    }

    private func queueBinding() -> Result {
        do {
            _ = try NetfilterQueue(QueueConfiguration(queueNumber: queue))
            return Result(status: .ok, name: "queue binding", detail: "bound and released queue \(queue) (nfnetlink_queue, GSO)")
        } catch {
            return Result(status: .fail, name: "queue binding", detail: "\(error)")
        }
    }
}
