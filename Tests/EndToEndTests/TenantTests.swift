import Control
import Foundation
import NetworkLab
import TestSupport
import XCTest

/// Tenants on demand (docs/instances.md, "Parallel test jobs on one host"): each job runs
/// under `vpm exec --new-aid`, starts an unmodified server on its well-known port and talks
/// to it on 127.0.0.1, ::1 and the host's address, as a test suite would; no job sees
/// another's data. Tenants come and go while the others run, and leave nothing behind.
/// Runs on every datapath (local mode).
final class TenantTests: XCTestCase {
    static func configuration(tenants: String = "{limit: 8}", control: String = "") -> String {
        """
        virtual-ports: 20000-20999
        ports: [6379, 5353/udp, 5353, 9000]
        applications: {acme: {}}
        cooperative: {local: true}
        tenants: \(tenants)
        \(control)
        """
    }

    /// A test job: its own redis-server on 6379 (daemonized, as a suite's set-up starts it),
    /// a marker key and a 1 MiB value written through 127.0.0.1, redis-benchmark against it,
    /// `$3` seconds of sleep (other jobs come and go meanwhile), then what it reads back over
    /// each address. `$1`: a directory, `$2`: the host's address.
    static let redisJob = #"""
        set -e
        dir=$1 host=$2
        redis-server --port 6379 --protected-mode no --save "" --appendonly no --daemonize yes --pidfile "$dir/$VPM_AID.pid" --logfile "$dir/$VPM_AID.redis.log"
        i=0
        until [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = PONG ]; do
            i=$((i + 1)); [ $i -lt 100 ] || { echo "redis did not answer"; exit 3; }; sleep 0.1
        done
        redis-cli -h 127.0.0.1 -p 6379 set marker "$VPM_AID" >/dev/null
        redis-cli -h 127.0.0.1 -p 6379 set "marker:$VPM_AID" 1 >/dev/null
        head -c 786432 /dev/urandom | base64 -w0 > "$dir/$VPM_AID.blob"
        redis-cli -h 127.0.0.1 -p 6379 -x set blob < "$dir/$VPM_AID.blob" >/dev/null
        redis-benchmark -h 127.0.0.1 -p 6379 -q -n 2000 -c 4 -t set,get,incr,lpush > "$dir/$VPM_AID.bench"
        sleep "$3"
        echo "aid=$VPM_AID"
        echo "marker=$(redis-cli -h 127.0.0.1 -p 6379 --raw get marker)"
        echo "marker6=$(redis-cli -h ::1 -p 6379 --raw get marker)"
        echo "markerhost=$(redis-cli -h "$host" -p 6379 --raw get marker)"
        echo "markers=$(redis-cli -h 127.0.0.1 -p 6379 --raw keys 'marker:*' | tr '\n' ' ')"
        echo "blob=$(redis-cli -h 127.0.0.1 -p 6379 --raw get blob | head -c "$(stat -c %s "$dir/$VPM_AID.blob")" | sha256sum | cut -d' ' -f1)"
        echo "expected=$(sha256sum < "$dir/$VPM_AID.blob" | cut -d' ' -f1)"
        redis-cli -h 127.0.0.1 -p 6379 shutdown nosave >/dev/null 2>&1 || true
        """#

    /// The `key=value` lines a job printed, and the tenant `vpm exec` named on standard error.
    static func report(_ path: String) -> (tenant: String?, values: [String: String]) {
        let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        var values: [String: String] = [:]
        var tenant: String?
        for line in text.split(separator: "\n") {
            if line.hasPrefix("vpm: tenant ") { tenant = line.dropFirst("vpm: tenant ".count).split(separator: " ").first.map(String.init) }
            if let equals = line.firstIndex(of: "=") { values[String(line[..<equals])] = String(line[line.index(after: equals)...]) }
        }
        return (tenant, values)
    }

    func testParallelJobsEachGetTheirOwnRedisAndLeaveNothingBehind() throws {
        try withExecEngine("tenants", configuration: Self.configuration()) { setup in
            let (lab, engine, directory) = (setup.lab, setup.engine, setup.directory)
            let script = "\(directory)/job.sh"
            try Self.redisJob.write(toFile: script, atomically: true, encoding: .utf8)
            func job(_ name: String, sleep: Int) throws -> BackgroundProcess {
                try engine.execNewTenant(["sh", script, directory, lab.server.address, "\(sleep)"], log: "\(name).log")
            }
            // Two long jobs; two short ones that end while those run; a fifth that starts
            // once the short ones have gone.
            var jobs: [(name: String, process: BackgroundProcess)] = []
            for index in 0..<2 { jobs.append(("long\(index)", try job("long\(index)", sleep: 6))) }
            for index in 0..<2 { jobs.append(("short\(index)", try job("short\(index)", sleep: 0))) }
            try NetworkLab.poll("the short jobs to finish", timeout: 60) { !jobs[2].process.isRunning && !jobs[3].process.isRunning }
            XCTAssertTrue(jobs[0].process.isRunning && jobs[1].process.isRunning, "the long jobs should still run")

            // Another vpm exec joins a running tenant by its name and reaches its redis.
            var longTenant: String?
            try NetworkLab.poll("the first long job's tenant to be named", timeout: 10) {
                longTenant = Self.report("\(directory)/long0.log").tenant
                return longTenant != nil
            }
            let joined = try engine.execAndWait(try XCTUnwrap(longTenant), ["redis-cli", "-h", "127.0.0.1", "-p", "6379", "--raw", "get", "marker"])
            XCTAssertEqual(joined.status, 0, joined.standardError)
            XCTAssertEqual(joined.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines), longTenant)

            jobs.append(("late", try job("late", sleep: 0)))
            try NetworkLab.poll("every job to finish", timeout: 90) { jobs.allSatisfy { !$0.process.isRunning } }

            var tenants: Set<String> = []
            for (name, process) in jobs {
                let (tenant, values) = Self.report("\(directory)/\(name).log")
                let log = setup.text("\(name).log")
                XCTAssertEqual(process.terminationStatus, 0, "\(name): \(log)")
                guard let tenant else { XCTFail("\(name) named no tenant: \(log)"); continue }
                tenants.insert(tenant)
                XCTAssertTrue(tenant.hasPrefix("tenant-"), tenant)
                XCTAssertEqual(values["aid"], tenant, "the program's VPM_AID")
                // Its own data, over every address; one marker: nobody else's.
                XCTAssertEqual(values["marker"], tenant, "\(name): \(log)")
                XCTAssertEqual(values["marker6"], tenant, "\(name): \(log)")
                XCTAssertEqual(values["markerhost"], tenant, "\(name): \(log)")
                XCTAssertEqual(values["markers"], "marker:\(tenant) ", "\(name): only its own job's key: \(log)")
                XCTAssertEqual(values["blob"], values["expected"], "\(name): \(log)")
                XCTAssertNotNil(values["expected"], "\(name): \(log)")
            }
            XCTAssertEqual(tenants.count, 5, "each job its own tenant: \(tenants)")

            // Gone with their jobs: no tenant, instance or flow is left.
            try NetworkLab.poll("the tenants' instances and flows to go", timeout: 20) {
                guard let apps = try? setup.apps() else { return false }
                let flows = (try? JSONDecoder().decode([FlowRecord].self, from: Data(engine.flows(json: true).standardOutput.utf8))) ?? []
                return apps.isEmpty && !flows.contains { tenants.contains($0.aid) }
            }
            let ended = engine.log.components(separatedBy: "tenant ended").count - 1
            XCTAssertEqual(ended, 5, engine.log)
        }
    }

    /// docs/examples/parallel-jobs.sh, as a user runs it against this engine.
    func testTheExampleScriptRunsJobsSideBySide() throws {
        try withExecEngine("tenants-example", configuration: Self.configuration()) { setup in
            let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            let output = try setup.lab.run(setup.lab.server, [
                "env", "VPM=\(setup.vpm)", "VPM_CONFIG=\(setup.engine.configurationPath)", "VPM_SOCKET=\(setup.engine.socketPath)",
                "sh", root.appendingPathComponent("docs/examples/parallel-jobs.sh").path, "3",
            ], timeout: 120)
            XCTAssertEqual(output.status, 0, output.standardOutput + output.standardError)
            let lines = output.standardOutput.split(separator: "\n").filter { $0.hasSuffix("its own redis on 6379, its own data") }
            XCTAssertEqual(lines.count, 3, output.standardOutput)
            XCTAssertEqual(Set(lines.map { $0.prefix { $0 != ":" } }).count, 3, "three tenants")
        }
    }

    /// The same with a UDP server: two jobs, each its own dnsmasq on 5353 and its own
    /// queries to it, from unconnected and connected sockets, over both loopbacks. Each job
    /// waits for its server as a suite would, asking until it answers: the first queries
    /// are refused (no instance yet), and the socket's registration stays for the next.
    func testParallelJobsEachGetTheirOwnDNSServer() throws {
        try withExecEngine("tenants-udp", configuration: Self.configuration()) { setup in
            let (engine, directory) = (setup.engine, setup.directory)
            let load = "\(directory)/dns-load.py"
            try UDPServers.dnsLoadScript.write(toFile: load, atomically: true, encoding: .utf8)
            let job = """
                dnsmasq --keep-in-foreground --conf-file=/dev/null --port=5353 --no-resolv --no-hosts --user=root --group=root \
                  --pid-file=\(directory)/$VPM_AID.dnsmasq.pid --txt-record=svc.test,$VPM_AID --log-facility=- 2>"\(directory)/$VPM_AID.dnsmasq.log" &
                server=$!
                i=0
                until python3 \(load) 127.0.0.1 5353 1 sendto | grep -q "$VPM_AID"; do
                    i=$((i + 1)); [ $i -lt 50 ] || { echo "dnsmasq did not answer"; exit 3; }; sleep 0.2
                done
                echo "aid=$VPM_AID"
                echo "sendto=$(python3 \(load) 127.0.0.1 5353 300 sendto)"
                echo "connect6=$(python3 \(load) ::1 5353 300 connect)"
                kill $server
                """
            let jobs = try (0..<2).map { try engine.execNewTenant(["sh", "-c", job], log: "dns\($0).log") }
            try NetworkLab.poll("both jobs to finish", timeout: 120) { jobs.allSatisfy { !$0.isRunning } }
            var tenants: Set<String> = []
            for index in 0..<2 {
                let (tenant, values) = Self.report("\(directory)/dns\(index).log")
                let log = setup.text("dns\(index).log")
                guard let tenant else { XCTFail("no tenant: \(log)"); continue }
                tenants.insert(tenant)
                for way in ["sendto", "connect6"] {
                    let result = try JSONDecoder().decode(UDPServers.LoadResult.self, from: Data((values[way] ?? "{}").utf8))
                    XCTAssertEqual(result.answers, [tenant: 300], "\(way): \(log)")
                }
            }
            XCTAssertEqual(tenants.count, 2)
        }
    }

    /// An engine restart keeps the tenants whose members still run: the job's redis goes on
    /// serving it, another vpm exec still joins it, and it still ends with its job.
    func testAnEngineRestartKeepsItsTenants() throws {
        try withExecEngine("tenants-restart", configuration: Self.configuration()) { setup in
            let (engine, directory) = (setup.engine, setup.directory)
            let job = try engine.execNewTenant(["sh", "-c", """
                redis-server --port 6379 --protected-mode no --save "" --daemonize yes --pidfile \(directory)/job.pid --logfile \(directory)/redis.log
                until redis-cli ping >/dev/null 2>&1; do sleep 0.1; done
                redis-cli set marker "$VPM_AID"
                i=0; while [ ! -e \(directory)/done ] && [ $i -lt 600 ]; do i=$((i + 1)); sleep 0.1; done
                redis-cli shutdown nosave
                """], log: "job.log")
            defer { job.terminate() }
            var tenant: String?
            try NetworkLab.poll("the job's marker", timeout: 20) {
                tenant = Self.report("\(directory)/job.log").tenant
                return setup.text("job.log").contains("OK")
            }
            let name = try XCTUnwrap(tenant)
            XCTAssertEqual(engine.stop(), 0)
            try engine.start()
            XCTAssertTrue(FileManager.default.fileExists(atPath: engine.socketPath + ".tenants"))
            let read = try engine.execAndWait(name, ["redis-cli", "--raw", "get", "marker"])
            XCTAssertEqual(read.status, 0, read.standardError)
            XCTAssertEqual(read.standardOutput, "\(name)\n", "the restarted engine routes the tenant to its redis")
            XCTAssertTrue(try setup.apps().contains { $0.aid == name && $0.initialPort == 6379 })
            // The job ends as it would: it stops its redis and exits.
            FileManager.default.createFile(atPath: "\(directory)/done", contents: nil)
            try NetworkLab.poll("the job to finish", timeout: 15) { !job.isRunning }
            XCTAssertEqual(job.terminationStatus, 0, setup.text("job.log"))
            try NetworkLab.poll("the tenant to end with its job", timeout: 15) { engine.log.contains("tenant ended") }
            try NetworkLab.poll("its redis to be gone", timeout: 15) { (try? setup.apps())?.isEmpty == true }
        }
    }

    /// `vpm reload` adds an application and removes an idle one while another AID's
    /// transfer crosses the reload (sha256); an application that still has an instance is
    /// not removed, and the refusal says which.
    func testReloadAddsAndRemovesApplicationsWhileATransferCrossesIt() throws {
        let start = Self.configuration().replacingOccurrences(of: "applications: {acme: {}}", with: "applications: {acme: {}, globex: {}}")
        try withExecEngine("reload-apps", configuration: start) { setup in
            let (engine, directory) = (setup.engine, setup.directory)
            let file = "\(directory)/big", received = "\(directory)/received"
            try NetworkLab.makeRandomFile(file, count: 24 << 20)
            _ = try engine.exec("acme", ["socat", "TCP-LISTEN:9000,reuseaddr,fork", "SYSTEM:cat \(file)"], log: "acme.log")
            try NetworkLab.poll("acme's instance", timeout: 10) { (try? setup.apps())?.contains { $0.aid == "acme" } == true }
            try Self.slowReader.write(toFile: "\(directory)/reader.py", atomically: true, encoding: .utf8)
            let download = try engine.exec("acme", ["python3", "\(directory)/reader.py", "127.0.0.1", "9000", received], log: "reader.log")
            try NetworkLab.poll("the transfer to be under way", timeout: 20) {
                ((try? FileManager.default.attributesOfItem(atPath: received)[.size] as? Int) ?? 0) >= 1 << 20
            }
            let old = "\(directory)/old.yaml"
            try start.write(toFile: old, atomically: true, encoding: .utf8)
            let added = start.replacingOccurrences(of: "applications: {acme: {}, globex: {}}", with: "applications: {acme: {}, initech: {}}")
            try added.write(toFile: engine.configurationPath, atomically: true, encoding: .utf8)
            let reload = try engine.reload()
            XCTAssertEqual(reload.status, 0, reload.standardError)
            XCTAssertTrue(reload.standardOutput.contains("applications changed"), reload.standardOutput)
            XCTAssertTrue(download.isRunning, "the transfer should cross the reload")

            // initech runs at once; globex can no longer register (asked with the old file).
            _ = try engine.exec("initech", ["socat", "TCP-LISTEN:9000,reuseaddr,fork", "SYSTEM:echo initech"], log: "initech.log")
            try NetworkLab.poll("initech's instance", timeout: 10) { (try? setup.apps())?.contains { $0.aid == "initech" } == true }
            let initech = try engine.execAndWait("initech", ["socat", "-u", "TCP:127.0.0.1:9000", "STDOUT"])
            XCTAssertEqual(initech.standardOutput, "initech\n", initech.standardError)
            let globex = try setup.lab.run(setup.lab.server, [setup.vpm, "exec", "--aid", "globex", "--config", old, "--socket", engine.socketPath,
                                                              "--", "socat", "TCP-LISTEN:9000", "STDOUT"], timeout: 20)
            XCTAssertNotEqual(globex.status, 0)
            XCTAssertTrue(globex.standardError.contains("AID 'globex' is not in the configuration"), globex.standardError)

            // acme still has its instance: not removed, nothing changes.
            try added.replacingOccurrences(of: "{acme: {}, initech: {}}", with: "{initech: {}}").write(toFile: engine.configurationPath, atomically: true, encoding: .utf8)
            let refused = try engine.reload()
            XCTAssertNotEqual(refused.status, 0)
            XCTAssertTrue((refused.standardOutput + refused.standardError).contains("it removes applications that still have instances: acme 9000/tcp"),
                          refused.standardOutput + refused.standardError)
            try added.write(toFile: engine.configurationPath, atomically: true, encoding: .utf8)  // as the operator puts it back
            let stillAcme = try engine.execAndWait("acme", ["sh", "-c", "socat -u TCP:127.0.0.1:9000 STDOUT | head -c 4 | wc -c"])
            XCTAssertEqual(stillAcme.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines), "4", "acme is still served")

            try NetworkLab.poll("the transfer to finish", timeout: 60) { !download.isRunning }
            XCTAssertEqual(download.terminationStatus, 0, setup.text("reader.log"))
            XCTAssertEqual(try NetworkLab.sha256(received), try NetworkLab.sha256(file))
        }
    }

    /// `python3 reader.py HOST PORT FILE`: reads a connection to FILE at about 6 MB/s.
    static let slowReader = """
        import socket, sys, time
        s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
        with open(sys.argv[3], "wb") as out:
            while True:
                data = s.recv(65536)
                if not data: break
                out.write(data); out.flush()
                time.sleep(0.01)
        """

    /// `python3 raw-bind.py SOCKET AID`: a bind request for AID sent by hand, with a socket.
    static let rawBind = """
        import array, json, socket, sys
        s = socket.socket()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as control:
            control.connect(sys.argv[1])
            request = {"command": "bind", "aid": sys.argv[2], "initialPort": 6379, "transport": "tcp", "localAddress": "0.0.0.0"}
            control.sendmsg([(json.dumps(request) + "\\n").encode()], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [s.fileno()]))])
            print(json.loads(control.makefile().readline()).get("error") or "bound")
        """

    /// Who may make and join tenants, and how many may exist: each refusal names its rule.
    func testRefusalsNameTheirRule() throws {
        let configuration = Self.configuration(tenants: #"{users: ["64001"], limit: 2, ports: [6379]}"#, control: #"control: {group: "64100"}"#)
        try withExecEngine("tenants-refused", configuration: configuration) { setup in
            let (lab, engine, directory) = (setup.lab, setup.engine, setup.directory)
            try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: directory)
            let allowed = ExecTests.asUser(64001, groups: [64100]), other = ExecTests.asUser(64002, groups: [64100])
            func run(_ user: [String], _ arguments: [String]) throws -> CommandOutput {
                try lab.run(lab.server, user + [setup.vpm, "exec", "--config", engine.configurationPath, "--socket", engine.socketPath]
                            + arguments, timeout: 30)
            }
            // A user the tenants: section does not name.
            let stranger = try run(other, ["--new-aid", "--", "true"])
            XCTAssertNotEqual(stranger.status, 0)
            XCTAssertTrue(stranger.standardError.contains("may not make tenants (tenants: allows users [64001] and no groups)"), stranger.standardError)

            // Two tenants held open: the limit's third is refused.
            let holders = try (0..<2).map { try engine.execNewTenant(["sleep", "60"], user: allowed, log: "holder\($0).log") }
            defer { for holder in holders { holder.terminate() } }
            var names: [String] = []
            try NetworkLab.poll("both tenants to be made", timeout: 10) {
                names = (0..<2).compactMap { Self.report("\(directory)/holder\($0).log").tenant }
                return names.count == 2
            }
            let third = try run(allowed, ["--new-aid", "--", "true"])
            XCTAssertNotEqual(third.status, 0)
            XCTAssertTrue(third.standardError.contains("2 tenants exist, the most tenants.limit allows (2)"), third.standardError)

            // Another user may not join a tenant; nor may a process of one tenant join another,
            // even as the same user. The owner may, from outside.
            let foreign = try run(other, ["--aid", names[0], "--", "true"])
            XCTAssertNotEqual(foreign.status, 0)
            XCTAssertTrue(foreign.standardError.contains("tenant \(names[0]) belongs to uid 64001"), foreign.standardError)
            let crossing = try run(allowed, ["--aid", names[0], "--", setup.vpm, "exec", "--config", engine.configurationPath,
                                             "--socket", engine.socketPath, "--aid", names[1], "--", "true"])
            XCTAssertNotEqual(crossing.status, 0)
            XCTAssertTrue(crossing.standardError.contains("a process of tenant \(names[0]) may not join tenant \(names[1])"), crossing.standardError)
            let owner = try run(allowed, ["--aid", names[1], "--", "sh", "-c", "echo $VPM_AID"])
            XCTAssertEqual(owner.status, 0, owner.standardError)
            XCTAssertEqual(owner.standardOutput, "\(names[1])\n")

            // A process that did not join (the owner's, or root's, sending the request by hand)
            // cannot register an instance for the tenant.
            let raw = "\(directory)/raw-bind.py"
            try Self.rawBind.write(toFile: raw, atomically: true, encoding: .utf8)
            for user in [allowed, []] {
                let bound = try lab.run(lab.server, user + ["/usr/bin/python3", raw, engine.socketPath, names[0]], timeout: 20)
                XCTAssertTrue(bound.standardOutput.contains("has not joined tenant \(names[0])"), bound.standardOutput + bound.standardError)
            }

            // A port tenants may not use is refused, not let through to the real port.
            let bind = try run(allowed, ["--aid", names[0], "--", "python3", "-c",
                                         "import socket; s = socket.socket(); s.bind(('0.0.0.0', 9000))"])
            XCTAssertNotEqual(bind.status, 0)
            XCTAssertTrue(bind.standardError.contains("9000/tcp is not a port tenants may use (tenants.ports: 6379/tcp)"), bind.standardError)

            // An engine without tenants: says so before anything runs.
            let plain = "\(directory)/plain.yaml"
            try Self.configuration().replacingOccurrences(of: "tenants: {limit: 8}", with: "").write(toFile: plain, atomically: true, encoding: .utf8)
            let none = try lab.run(lab.server, [setup.vpm, "exec", "--config", plain, "--socket", engine.socketPath, "--new-aid", "--", "true"])
            XCTAssertNotEqual(none.status, 0)
            XCTAssertTrue(none.standardError.contains("has no tenants: section"), none.standardError)
        }
    }
}
