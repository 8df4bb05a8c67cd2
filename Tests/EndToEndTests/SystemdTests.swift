import Control
import Foundation
import NetworkLab
import TestSupport
import XCTest

/// vpm's unit file and instance units under a real systemd as PID 1: this machine's own
/// systemd 252, booted in a container in the lab's server namespace (`SystemdContainer`,
/// docs/operations.md). The units are the shipped ones, with vpm at /opt/vpm.
final class SystemdTests: XCTestCase {
    static let configuration = """
        virtual-ports: 20000-20999
        ports: [9000, 9001, 9002, 9003]
        applications: {acme: {}, globex: {}}
        metrics: {listen: 127.0.0.1:9464}
        sources:
          - {from: 198.18.1.0/24, aid: acme}
          - {from: 2001:db8:0:1::/64, aid: acme}
        """
    static let globexSources = """

          - {from: 198.18.2.0/24, aid: globex}
          - {from: 2001:db8:0:2::/64, aid: globex}
        """

    struct Setup {
        var lab: NetworkLab
        var container: SystemdContainer
        var directory: String

        func client(_ aid: String) -> NetworkLab.Host { lab.clients[aid == "acme" ? 0 : 1] }

        func vpm(_ arguments: String...) throws -> CommandOutput {
            try container.checked(["/opt/vpm/vpm"] + arguments)
        }

        /// What is left of the engine's rules, tables and pins in the namespace.
        func engineLeftovers() throws -> [String] {
            var found: [String] = []
            let tables = try container.checked(["nft", "list", "tables"]).standardOutput
            found += tables.split(separator: "\n").filter { $0.contains("vpm") }.map(String.init)
            for command in ["iptables-save", "ip6tables-save"] {
                let rules = try container.checked([command]).standardOutput
                found += rules.split(separator: "\n").filter { $0.lowercased().contains("vpm") }.map(String.init)
            }
            let pins = try container.run(["find", "/sys/fs/bpf/vpm", "-mindepth", "1"]).standardOutput
            found += pins.split(separator: "\n").map(String.init)
            if try container.run(["test", "-e", "/run/vpm/vpm.sock"]).status == 0 { found.append("/run/vpm/vpm.sock") }
            return found
        }
    }

    private func withContainer(_ tag: String, configuration: String = SystemdTests.configuration, _ body: (Setup) throws -> Void) throws {
        try Privileged.requireRoot()
        let lab = try NetworkLab(name: Privileged.labName(tag), clientAddresses: ["198.18.1.2", "198.18.2.2", "198.18.3.2"])
        defer { lab.tearDown() }
        let directory = Privileged.scratchDirectory(tag)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let vpm = try Privileged.vpmExecutable()
        // The scratch folder appears at the same path inside, for the servers' files.
        let container = try SystemdContainer(host: lab.server, name: "vpmt-\(tag)", vpmExecutable: vpm,
                                             log: "\(directory)/console.log", binds: ["--bind=\(directory)"])
        defer { container.stop() }
        try container.mountBPF()
        let unit = try String(contentsOf: Privileged.packageRoot.appendingPathComponent("packaging/vpm.service.in"), encoding: .utf8)
            .replacingOccurrences(of: "@BINDIR@", with: "/opt/vpm")
        try container.write(unit, to: "/etc/systemd/system/vpm.service")
        let template = try String(contentsOf: Privileged.packageRoot.appendingPathComponent("packaging/vpm-exec@.service.in"), encoding: .utf8)
            .replacingOccurrences(of: "@BINDIR@", with: "/opt/vpm")
        try container.write(template, to: "/etc/systemd/system/vpm-exec@.service")
        try container.write(configuration, to: "/etc/vpm/vpm.yaml")
        try container.systemctl("daemon-reload")
        let setup = Setup(lab: lab, container: container, directory: directory)
        defer {
            if (testRun?.totalFailureCount ?? 0) > 0 {
                let journal = (try? container.run(["journalctl", "--no-pager", "-n", "150", "-o", "short-precise"]))?.standardOutput ?? ""
                print("the container's journal, last 150 lines:\n\(journal)")
            }
        }
        try body(setup)
    }

    // MARK: - The engine's unit

    func testTheServiceUnitUnderSystemd() throws {
        try withContainer("unit") { setup in
            let (lab, container) = (setup.lab, setup.container)
            // Type=notify: `systemctl start` returns once the engine says READY=1, which it
            // says once its rules are in and its socket answers.
            try container.systemctl("start", "vpm")
            XCTAssertEqual(try container.checked(["systemctl", "show", "-p", "ActiveState", "--value", "vpm"]).standardOutput, "active\n")
            XCTAssertTrue(try container.checked(["nft", "list", "tables"]).standardOutput.contains("vpm"), "the rules are in when start returns")
            XCTAssertTrue(try setup.vpm("stats").standardOutput.contains("packets queued"), "the control socket answers when start returns")
            let metrics = try container.checked(["curl", "-sS", "--max-time", "5", "http://127.0.0.1:9464/metrics"]).standardOutput
            XCTAssertTrue(metrics.contains("vpm_"), "the metrics endpoint serves under the unit's hardening")

            // An instance under the shipped template, as an operator makes one.
            let site = try NginxSite(root: "\(setup.directory)/nginx-acme", port: 9000, content: "served by acme\n", daemon: false)
            try NetworkLab.makeRandomFile("\(site.root)/www/big.bin", count: 6 << 20)
            try container.write("VPM_AID=acme\nVPM_COMMAND=/usr/sbin/nginx -p \(site.root) -c \(site.configuration)\n", to: "/etc/vpm/exec/nginx-acme.conf")
            try container.systemctl("start", "vpm-exec@nginx-acme")
            try setup.waitForInstances(["acme"])
            let url = "http://\(lab.server.address):9000"
            try NetworkLab.poll("acme's nginx to serve", timeout: 20) {
                (try? lab.run(setup.client("acme"), ["curl", "-sS", "--max-time", "3", "\(url)/"]))?.standardOutput == "served by acme\n"
            }
            XCTAssertNotEqual(try lab.run(setup.client("globex"), ["curl", "-sS", "--max-time", "3", "\(url)/"]).status, 0,
                              "globex's clients have no source rule yet")

            // A refused reload fails `systemctl reload` and changes nothing; a good one applies.
            try container.write(Self.configuration.replacingOccurrences(of: "ports: [9000, 9001, 9002, 9003]", with: "ports: [9000]"),
                                to: "/etc/vpm/vpm.yaml")
            XCTAssertNotEqual(try container.run(["systemctl", "reload", "vpm"]).status, 0, "a reload that changes ports fails")
            XCTAssertEqual(try container.checked(["systemctl", "show", "-p", "ActiveState", "--value", "vpm"]).standardOutput, "active\n")
            try container.write(Self.configuration + Self.globexSources, to: "/etc/vpm/vpm.yaml")
            try container.systemctl("reload", "vpm")
            let globexSite = try NginxSite(root: "\(setup.directory)/nginx-globex", port: 9000, content: "served by globex\n")
            try container.write("VPM_AID=globex\nVPM_COMMAND=/usr/sbin/nginx -p \(globexSite.root) -c \(globexSite.configuration)\n",
                                to: "/etc/vpm/exec/nginx-globex.conf")
            try container.systemctl("start", "vpm-exec@nginx-globex")
            try NetworkLab.poll("globex's nginx to serve after the reload", timeout: 20) {
                (try? lab.run(setup.client("globex"), ["curl", "-sS", "--max-time", "3", "\(url)/"]))?.standardOutput == "served by globex\n"
            }

            // journald keeps the log's priorities: `-p` filters by them.
            func journal(_ priority: String) throws -> String {
                try container.checked(["journalctl", "--no-pager", "-u", "vpm", "-p", priority, "-o", "cat"]).standardOutput
            }
            let errors = try journal("err"), notices = try journal("notice"), infos = try journal("info")
            XCTAssertTrue(errors.contains("configuration not reloaded"), errors)
            XCTAssertFalse(errors.contains("configuration reloaded"), errors)
            XCTAssertTrue(notices.contains("configuration reloaded"), notices)
            XCTAssertFalse(notices.contains("engine running"), notices)
            XCTAssertTrue(infos.contains("engine running"), infos)

            // `systemctl restart` in the middle of a transfer: the client reads nothing until
            // the restart is over (its pipe and the connection's window stay full), then the
            // whole file, byte for byte.
            let download = "\(setup.directory)/across-restart.bin", go = "\(setup.directory)/go"
            let transfer = try lab.spawn(setup.client("acme"), ["bash", "-o", "pipefail", "-c",
                                                                "curl -sS --max-time 60 \(url)/big.bin | { while [ ! -e \(go) ]; do sleep 0.05; done; cat > \(download); }"],
                                         log: "\(setup.directory)/transfer.log")
            try NetworkLab.poll("the transfer to be under way", timeout: 10) {
                let sockets = (try? lab.run(setup.client("acme"), ["ss", "-Htn", "state", "established", "dst", "\(lab.server.address):9000"]))?.standardOutput ?? ""
                return !sockets.isEmpty
            }
            try container.systemctl("restart", "vpm")
            XCTAssertTrue(transfer.isRunning, "the restart happened while the transfer ran: \(setup.text("transfer.log"))")
            FileManager.default.createFile(atPath: go, contents: nil)
            try NetworkLab.poll("the transfer to finish", timeout: 60) { !transfer.isRunning }
            XCTAssertEqual(transfer.terminationStatus, 0, setup.text("transfer.log"))
            XCTAssertEqual(try NetworkLab.sha256(download), try NetworkLab.sha256("\(site.root)/www/big.bin"))
            XCTAssertEqual(try lab.checked(setup.client("acme"), ["curl", "-sS", "--max-time", "5", "\(url)/"]).standardOutput, "served by acme\n",
                           "new connections after the restart")

            // `systemctl stop`: nothing of the engine's is left in the namespace.
            try container.systemctl("stop", "vpm")
            XCTAssertEqual(try setup.engineLeftovers(), [])
        }
    }

    /// The kernel datapath under the unit: nft NAT and conntrack with the unit's hardening.
    func testTheKernelDatapathUnderTheUnit() throws {
        try withContainer("kernel") { setup in
            let (lab, container) = (setup.lab, setup.container)
            try container.write("""
                [Service]
                ExecStart=
                ExecStart=/opt/vpm/vpm run --config /etc/vpm/vpm.yaml --socket /run/vpm/vpm.sock --datapath kernel

                """, to: "/etc/systemd/system/vpm.service.d/kernel.conf")
            try container.systemctl("daemon-reload")
            try container.systemctl("start", "vpm")
            let started = try container.checked(["journalctl", "--no-pager", "-u", "vpm", "-o", "cat"]).standardOutput
            XCTAssertTrue(started.contains("engine running") && started.contains("datapath=kernel"), started)
            // VPM_COMMAND is split at white space: the answer is a script.
            let answer = "\(setup.directory)/answer.sh"
            try "#!/bin/sh\nsleep 2\necho acme\n".write(toFile: answer, atomically: true, encoding: .utf8)
            try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: answer)
            try container.write("VPM_AID=acme\nVPM_COMMAND=/usr/bin/socat TCP-LISTEN:9000,fork,reuseaddr EXEC:\(answer)\n",
                                to: "/etc/vpm/exec/socat-acme.conf")
            try container.systemctl("start", "vpm-exec@socat-acme")
            try setup.waitForInstances(["acme"])
            let connection = try lab.spawn(setup.client("acme"), ["socat", "-T", "10", "-u", "TCP:\(lab.server.address):9000", "STDOUT"],
                                           log: "\(setup.directory)/connection.log")
            try NetworkLab.poll("the connection in conntrack and in vpm flows", timeout: 10) {
                let tracked = (try? container.run(["conntrack", "-L", "-p", "tcp", "--dport", "9000"]))?.standardOutput ?? ""
                let flows = (try? setup.vpm("flows"))?.standardOutput ?? ""
                return tracked.contains("198.18.1.2") && flows.contains("198.18.1.2")
            }
            try NetworkLab.poll("the answer", timeout: 10) { !connection.isRunning }
            XCTAssertEqual(setup.text("connection.log"), "acme\n")
            try container.systemctl("stop", "vpm-exec@socat-acme")
            try container.systemctl("stop", "vpm")
            XCTAssertEqual(try setup.engineLeftovers(), [])
        }
    }

    /// The fleet under the unit: etcd reached, the engine's key created where the
    /// configuration's default puts it (/var/lib/vpm, which ProtectSystem=strict makes
    /// read-only unless the unit names it), the instance published.
    func testTheFleetUnderTheUnit() throws {
        try withContainer("fleet") { setup in
            let (lab, container) = (setup.lab, setup.container)
            let etcd = try EtcdCluster(lab: lab, hosts: [lab.clients[2]], directory: setup.directory)
            try container.write(EtcdCluster.password + "\n", to: "/etc/vpm/etcd-password", mode: 0o600)
            try container.write(Self.configuration + """

                fleet:
                  etcd: [\(etcd.endpoints.joined(separator: ", "))]
                  name: unit-host
                  network: 198.18.0.0/16
                  virtual-ports: 20000-29999
                  lease: 60s
                  user: vpm
                  password-file: /etc/vpm/etcd-password

                """, to: "/etc/vpm/vpm.yaml")
            try container.systemctl("start", "vpm")
            try container.write("VPM_AID=acme\nVPM_COMMAND=/usr/bin/socat TCP-LISTEN:9000,fork,reuseaddr EXEC:/bin/hostname\n",
                                to: "/etc/vpm/exec/hostname-acme.conf")
            try container.systemctl("start", "vpm-exec@hostname-acme")
            try setup.waitForInstances(["acme"])
            try NetworkLab.poll("the instance in etcd", timeout: 20) {
                let entries = (try? etcd.ctl(["get", "--prefix", "/vpm/", "--keys-only"]))?.standardOutput ?? ""
                return entries.contains("unit-host") && entries.contains("acme")
            }
            let stats = try setup.vpm("stats").standardOutput
            XCTAssertTrue(stats.contains("connected"), stats)
            let key = try container.checked(["stat", "-c", "%a %s", "/var/lib/vpm/fleet.key"]).standardOutput
            XCTAssertTrue(key.hasPrefix("600 "), "the engine made its key, readable by root only: \(key)")
            XCTAssertEqual(try lab.checked(setup.client("acme"), ["socat", "-T", "5", "-u", "TCP:\(lab.server.address):9000", "STDOUT"]).standardOutput,
                           "vpmt-fleet\n")
            try container.systemctl("stop", "vpm-exec@hostname-acme")
            try container.systemctl("stop", "vpm")
            XCTAssertEqual(try setup.engineLeftovers(), [])
            // A clean stop revokes the engine's lease on the way out: its entries are gone
            // when `systemctl stop` returns, not a lease (60 s) later.
            let left = try etcd.ctl(["get", "--prefix", "/vpm/", "--keys-only"]).standardOutput
            XCTAssertFalse(left.contains("unit-host"), "the stopped engine left the fleet: \(left)")
        }
    }

    // MARK: - Instance units of every type

    func testInstanceUnitsOfEveryType() throws {
        try withContainer("types", configuration: Self.configuration + Self.globexSources) { setup in
            let (lab, container) = (setup.lab, setup.container)
            try container.systemctl("start", "vpm")
            let vpmExec = "/opt/vpm/vpm exec --aid %i --"
            // One template per type, %i the AID; each an unmodified server as its docs run it.
            try container.write("""
                [Unit]
                After=vpm.service
                [Service]
                Type=simple
                ExecStart=\(vpmExec) /usr/bin/socat TCP-LISTEN:9000,fork,reuseaddr "SYSTEM:echo simple %i"

                """, to: "/etc/systemd/system/simple@.service")
            try container.write("""
                [Unit]
                After=vpm.service
                [Service]
                Type=exec
                ExecStart=\(vpmExec) /usr/bin/memcached -p 9001 -U 0 -u memcache

                """, to: "/etc/systemd/system/exec@.service")
            for aid in ["acme", "globex"] {
                _ = try NginxSite(root: "\(setup.directory)/nginx-\(aid)", port: 9002, content: "forking \(aid)\n", daemon: true)
            }
            try container.write("""
                [Unit]
                After=vpm.service
                [Service]
                Type=forking
                PIDFile=\(setup.directory)/nginx-%i/nginx.pid
                ExecStart=\(vpmExec) /usr/sbin/nginx -p \(setup.directory)/nginx-%i -c \(setup.directory)/nginx-%i/nginx.conf

                """, to: "/etc/systemd/system/forking@.service")
            try container.write("""
                [Unit]
                After=vpm.service
                [Service]
                Type=notify
                ExecStart=\(vpmExec) /usr/bin/redis-server --port 9003 --supervised systemd --daemonize no --save "" --appendonly no --protected-mode no --dir /tmp --bind * -::*

                """, to: "/etc/systemd/system/notify@.service")
            try container.systemctl("daemon-reload")
            let kinds = ["simple", "exec", "forking", "notify"]
            for kind in kinds {
                for aid in ["acme", "globex"] {
                    try container.systemctl("start", "\(kind)@\(aid)")
                    XCTAssertEqual(try container.checked(["systemctl", "show", "-p", "ActiveState", "--value", "\(kind)@\(aid)"]).standardOutput,
                                   "active\n", "\(kind)@\(aid) is active once start returns")
                }
            }
            // Type=forking: systemd's main process is the daemon (its pid file), not vpm exec.
            let mainPID = try container.checked(["systemctl", "show", "-p", "MainPID", "--value", "forking@acme"]).standardOutput
            let command = try container.checked(["cat", "/proc/\(mainPID.trimmingCharacters(in: .whitespacesAndNewlines))/cmdline"]).standardOutput
            XCTAssertTrue(command.hasPrefix("nginx"), "forking@acme's main process: \(command)")

            let server = lab.server.address
            for aid in ["acme", "globex"] {
                let client = setup.client(aid)
                try NetworkLab.poll("\(aid)'s simple unit to serve", timeout: 20) {
                    (try? lab.run(client, ["socat", "-T", "3", "STDIO", "TCP:\(server):9000"]))?.standardOutput == "simple \(aid)\n"
                }
                let stored = try lab.checked(client, ["sh", "-c", "printf 'set marker 0 0 \(aid.count)\\r\\n\(aid)\\r\\nget marker\\r\\nquit\\r\\n' | socat -T 5 - TCP:\(server):9001"])
                XCTAssertEqual(stored.standardOutput, "STORED\r\nVALUE marker 0 \(aid.count)\r\n\(aid)\r\nEND\r\n")
                XCTAssertEqual(try lab.checked(client, ["curl", "-sS", "--max-time", "5", "http://\(server):9002/"]).standardOutput, "forking \(aid)\n")
                XCTAssertEqual(try lab.checked(client, ["redis-cli", "-h", server, "-p", "9003", "set", "marker", aid]).standardOutput, "OK\n")
            }
            for aid in ["acme", "globex"] {
                XCTAssertEqual(try lab.checked(setup.client(aid), ["redis-cli", "-h", server, "-p", "9003", "get", "marker"]).standardOutput,
                               "\(aid)\n", "each AID's notify unit is its own redis")
            }
            // A daemon's pid is learnt from its socket (the process that bound has exited): within a second.
            try NetworkLab.poll("eight instances with their processes (four types, two AIDs)", timeout: 10) {
                let apps = (try? setup.vpm("apps", "--json")).flatMap { try? JSONDecoder().decode([AppRecord].self, from: Data($0.standardOutput.utf8)) } ?? []
                return apps.filter { !$0.processes.isEmpty }.count == 8
            }

            for kind in kinds { for aid in ["acme", "globex"] { try container.systemctl("stop", "\(kind)@\(aid)") } }
            let left = try container.run(["systemctl", "list-units", "--no-legend", "--state=active", "simple@*", "exec@*", "forking@*", "notify@*"])
            XCTAssertEqual(left.standardOutput, "", "every instance unit stopped")
            try NetworkLab.poll("every instance's port to be released", timeout: 20) {
                let apps = (try? setup.vpm("apps", "--json")).flatMap { try? JSONDecoder().decode([AppRecord].self, from: Data($0.standardOutput.utf8)) }
                return apps?.allSatisfy { $0.processes.isEmpty } ?? false
            }
            try container.systemctl("stop", "vpm")
        }
    }
}

extension SystemdTests.Setup {
    /// Waits until each AID has an instance with a process (Type=exec and simple units are
    /// started before their program binds).
    func waitForInstances(_ aids: Set<String>) throws {
        try NetworkLab.poll("instances of \(aids.sorted())", timeout: 20) {
            let apps = (try? vpm("apps", "--json")).flatMap { try? JSONDecoder().decode([AppRecord].self, from: Data($0.standardOutput.utf8)) } ?? []
            return aids.isSubset(of: Set(apps.filter { !$0.processes.isEmpty }.map(\.aid)))
        }
    }

    func text(_ name: String) -> String {
        (try? String(contentsOfFile: "\(directory)/\(name)", encoding: .utf8)) ?? ""
    }
}
