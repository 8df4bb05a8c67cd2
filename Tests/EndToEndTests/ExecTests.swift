import Control
import Foundation
import NetworkLab
import TestSupport
import XCTest

/// `vpm exec` and the interception layer against the real kernel: unmodified programs that
/// all bind port 9000, each really on its AID's virtual port.
final class ExecTests: XCTestCase {
    static func configuration(range: String = "20000-20999", allocation: String = "") -> String {
        """
        virtual-ports: \(range)
        ports: [9000]
        applications:
          acme: {}
          globex: {}
          initech: {}
        sources:
          - {from: 198.18.1.0/24, aid: acme}
          - {from: 198.18.2.0/24, aid: globex}
          - {from: 198.18.3.0/24, aid: initech}
          - {from: 2001:db8:0:1::/64, aid: acme}
          - {from: 2001:db8:0:2::/64, aid: globex}
          - {from: 2001:db8:0:3::/64, aid: initech}
        \(allocation)
        """
    }

    /// An nginx instance configured, like its twin, with `listen 9000`, serving `content`.
    private func startNginx(_ setup: ExecSetup, aid: String, content: String, bigFile: Int) throws -> String {
        let site = try NginxSite(root: "\(setup.directory)/\(aid)", content: content)
        try NetworkLab.makeRandomFile("\(site.root)/www/big.bin", count: bigFile)
        _ = try setup.exec(aid, site.command, log: "\(aid)-nginx.log")
        return site.root
    }

    func testTwoUnmodifiedNginxCopiesShareThePort() throws {
        try withExecEngine("nginx") { setup in
            let lab = setup.lab
            let roots = try ["acme", "globex"].map { aid in try startNginx(setup, aid: aid, content: "served by \(aid)\n", bigFile: 4 << 20) }
            try NetworkLab.poll("both nginx copies to register", timeout: 15) {
                ((try? setup.apps()) ?? []).filter { !$0.processes.isEmpty }.count == 2
            }
            let apps = try setup.apps()
            XCTAssertEqual(Set(apps.map(\.aid)), ["acme", "globex"])
            XCTAssertEqual(Set(apps.map(\.virtualPort)).count, 2, "each AID has its own virtual port: \(apps)")
            XCTAssertTrue(apps.allSatisfy { $0.origin == "exec" && $0.initialPort == 9000 })
            XCTAssertTrue(apps.allSatisfy { $0.processes.first?.command.contains("nginx") ?? false }, "\(apps)")
            for app in apps { try lab.waitForListener(lab.server, port: app.virtualPort) }

            // nginx listens on both families (`listen 9000; listen [::]:9000;`): one virtual port.
            for (index, aid) in ["acme", "globex"].enumerated() {
                let client = lab.clients[index]
                for family in NetworkLab.AddressFamily.allCases {
                    let url = "http://\(NetworkLab.endpoint(lab.server.address(family), 9000))"
                    let page = try lab.checked(client, ["curl", "-sS", "--max-time", "10", "\(url)/"])
                    XCTAssertEqual(page.standardOutput, "served by \(aid)\n", "\(client.address(family)) reached the wrong copy")
                    let download = "\(setup.directory)/\(aid).\(family).download"
                    try lab.checked(client, ["curl", "-sS", "--max-time", "30", "-o", download, "\(url)/big.bin"])
                    XCTAssertEqual(try NetworkLab.sha256(download), try NetworkLab.sha256("\(roots[index])/www/big.bin"))
                }
            }
            // nginx's own log: the port it served on, from getsockname() of the accepted socket.
            for aid in ["acme", "globex"] {
                let log = setup.text("\(aid)/access.log")
                XCTAssertTrue(log.contains(" 9000 \"GET / HTTP/1.1\" 200"), "\(aid) access log: \(log)")
                XCTAssertFalse(log.contains(" 2000"), "the virtual port leaked into \(aid)'s log: \(log)")
            }
        }
    }

    func testSameAIDSharesAVirtualPortAnotherAIDGetsItsOwn() throws {
        try withExecEngine("share") { setup in
            for (aid, name) in [("acme", "a1"), ("acme", "a2"), ("globex", "g1")] {
                _ = try setup.exec(aid, ["socat", "TCP-LISTEN:9000,reuseaddr,reuseport,fork", "SYSTEM:echo \(name)"], log: "\(name).log")
                try NetworkLab.poll("\(name) to register", timeout: 10) {
                    ((try? setup.apps()) ?? []).reduce(0) { $0 + $1.processes.count } >= (name == "a1" ? 1 : name == "a2" ? 2 : 3)
                }
            }
            let apps = try setup.apps()
            let acme = try XCTUnwrap(apps.first { $0.aid == "acme" }), globex = try XCTUnwrap(apps.first { $0.aid == "globex" })
            XCTAssertEqual(acme.processes.count, 2, "both acme processes share one instance: \(apps)")
            XCTAssertNotEqual(acme.virtualPort, globex.virtualPort)
            XCTAssertEqual(apps.count, 2)
        }
    }

    func testRangeExhaustionFailsAtOnce() throws {
        // Fail mode with a wait timeout of an hour: a fail-mode bind that waited would outlast the
        // library's 5 s answer timeout (fail mode gets no extra) and fail with "does not answer"
        // (EADDRNOTAVAIL), not with the engine's EADDRINUSE answer checked below.
        let allocation = "allocation: {when-exhausted: fail, wait-timeout: 1h}"
        try withExecEngine("full", configuration: Self.configuration(range: "20000-20001", allocation: allocation)) { setup in
            for aid in ["acme", "globex"] {
                _ = try setup.exec(aid, ["socat", "TCP-LISTEN:9000,reuseaddr,fork", "SYSTEM:echo \(aid)"], log: "\(aid).log")
            }
            try NetworkLab.poll("two instances", timeout: 10) { ((try? setup.apps()) ?? []).count == 2 }
            let third = try setup.lab.run(setup.lab.server, [setup.vpm, "exec", "--aid", "initech", "--config", setup.engine.configurationPath,
                                                             "--socket", setup.engine.socketPath, "--",
                                                             "socat", "TCP-LISTEN:9000,reuseaddr", "SYSTEM:echo initech"], timeout: 20)
            XCTAssertNotEqual(third.status, 0)
            XCTAssertTrue(third.standardError.contains("Address already in use"), third.standardError)
            XCTAssertTrue(third.standardError.contains("vpm: cannot bind port 9000/tcp for AID initech"), third.standardError)
            XCTAssertTrue(third.standardError.contains("the virtual port range is exhausted"), "the engine's answer: \(third.standardError)")
            XCTAssertFalse(third.standardError.contains("does not answer"), third.standardError)
            XCTAssertTrue(setup.engine.log.contains("virtual port range exhausted: bind refused"), setup.engine.log)
        }
    }

    func testRangeExhaustionWaitsForAFreedPort() throws {
        let allocation = "allocation: {when-exhausted: wait, wait-timeout: 8s}"
        try withExecEngine("wait", configuration: Self.configuration(range: "20000-20001", allocation: allocation)) { setup in
            var first: BackgroundProcess?
            for aid in ["acme", "globex"] {
                let process = try setup.exec(aid, ["socat", "TCP-LISTEN:9000,reuseaddr,fork", "SYSTEM:echo \(aid)"], log: "\(aid).log")
                if aid == "acme" { first = process }
            }
            try NetworkLab.poll("two instances", timeout: 10) { ((try? setup.apps()) ?? []).count == 2 }
            sleep(3)  // past the grace period after a bind, so a vanished socket counts
            // initech waits; acme dies 1 s later; initech gets acme's port.
            let third = try setup.exec("initech", ["socat", "TCP-LISTEN:9000,reuseaddr,fork", "SYSTEM:echo initech"], log: "initech.log")
            sleep(1)
            XCTAssertTrue(third.isRunning)
            kill(try XCTUnwrap(first).processIdentifier, SIGKILL)
            try NetworkLab.poll("initech to get a port", timeout: 10) {
                ((try? setup.apps()) ?? []).contains { $0.aid == "initech" }
            }
            let port = try XCTUnwrap(setup.apps().first { $0.aid == "initech" }?.virtualPort)
            try setup.lab.waitForListener(setup.lab.server, port: port)
            let output = try setup.lab.checked(setup.lab.clients[2], ["socat", "-T", "3", "STDIO", "TCP:\(setup.lab.server.address):9000"])
            XCTAssertEqual(output.standardOutput, "initech\n")

            // Nothing frees now: the next waiting bind fails after the timeout.
            let started = Date()
            let fourth = try setup.lab.run(setup.lab.server, [setup.vpm, "exec", "--aid", "acme", "--config", setup.engine.configurationPath,
                                                              "--socket", setup.engine.socketPath, "--",
                                                              "socat", "TCP-LISTEN:9000,reuseaddr", "SYSTEM:echo late"], timeout: 30)
            XCTAssertNotEqual(fourth.status, 0)
            XCTAssertTrue(fourth.standardError.contains("Address already in use"), fourth.standardError)
            // A lower bound (load only makes it longer): it proves the bind waited.
            XCTAssertGreaterThanOrEqual(Date().timeIntervalSince(started), 7, "wait mode waits for the timeout")
        }
    }

    func testKilledInstanceReleasesItsPort() throws {
        try withExecEngine("kill") { setup in
            let instance = try setup.exec("acme", ["socat", "TCP-LISTEN:9000,reuseaddr,fork", "SYSTEM:echo acme"], log: "acme.log")
            try NetworkLab.poll("acme to register", timeout: 10) { ((try? setup.apps()) ?? []).count == 1 }
            sleep(3)
            kill(instance.processIdentifier, SIGKILL)
            try NetworkLab.poll("the port to be released", timeout: 10) { (try? setup.apps())?.isEmpty ?? false }
            // The registry lets go first; the line follows once the port's flows are removed.
            try NetworkLab.poll("the engine to log the release", timeout: 5) { setup.engine.log.contains("virtual port released") }
        }
    }

    func testPlainProgramOnPort9000IsLeftAlone() throws {
        try withExecEngine("plain") { setup in
            _ = try setup.exec("acme", ["socat", "TCP-LISTEN:9000,reuseaddr,fork", "SYSTEM:echo acme"], log: "acme.log")
            try NetworkLab.poll("acme to register", timeout: 10) { ((try? setup.apps()) ?? []).count == 1 }
            // Not under vpm exec: binds the real port 9000, as Linux lets it.
            _ = try setup.lab.spawn(setup.lab.server, ["socat", "TCP-LISTEN:9000,reuseaddr,fork", "SYSTEM:echo plain"],
                                    log: "\(setup.directory)/plain.log")
            try setup.lab.waitForListener(setup.lab.server, port: 9000)
            // A client routed to acme still reaches acme, not the plain program.
            let output = try setup.lab.checked(setup.lab.clients[0], ["socat", "-T", "3", "STDIO", "TCP:\(setup.lab.server.address):9000"])
            XCTAssertEqual(output.standardOutput, "acme\n")
            // Local programs reach the plain one on 127.0.0.1:9000 (loopback is not multiplexed).
            let local = try setup.lab.checked(setup.lab.server, ["socat", "-T", "3", "STDIO", "TCP:127.0.0.1:9000"])
            XCTAssertEqual(local.standardOutput, "plain\n")
        }
    }

    func testEngineRestartKeepsInstances() throws {
        try withExecEngine("restart") { setup in
            _ = try setup.exec("acme", ["socat", "TCP6-LISTEN:9000,ipv6only=0,reuseaddr,fork", "SYSTEM:echo acme"], log: "acme.log")
            try NetworkLab.poll("acme to register", timeout: 10) { ((try? setup.apps()) ?? []).count == 1 }
            let port = try XCTUnwrap(setup.apps().first?.virtualPort)
            XCTAssertEqual(setup.engine.stop(), 0)
            try setup.engine.start()
            XCTAssertEqual(try setup.apps().first?.virtualPort, port, "the restarted engine knows the running instance")
            let output = try setup.lab.checked(setup.lab.clients[0], ["socat", "-T", "3", "STDIO", "TCP:\(setup.lab.server.address):9000"])
            XCTAssertEqual(output.standardOutput, "acme\n")
        }
    }

    func testWithoutEngineBindFailsNamingTheSocket() throws {
        try Privileged.requireRoot()
        let directory = Privileged.scratchDirectory("noengine")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try Self.configuration().write(toFile: "\(directory)/vpm.yaml", atomically: true, encoding: .utf8)
        let output = try Command.run([try Privileged.vpmExecutable(), "exec", "--aid", "acme", "--config", "\(directory)/vpm.yaml",
                                      "--socket", "\(directory)/none.sock", "--", "socat", "TCP-LISTEN:9000", "STDIO"], timeout: 20)
        XCTAssertNotEqual(output.status, 0)
        XCTAssertTrue(output.standardError.contains("\(directory)/none.sock"), output.standardError)
        XCTAssertTrue(output.standardError.contains("is `vpm run` running?"), output.standardError)
    }

    /// A statically linked C server (no dynamic loader: only the syscall boundary sees it)
    /// that first tries io_uring, then re-executes itself, then binds 9000 and reports what
    /// getsockname() says, for the listening socket and for every accepted one.
    static let staticServer = #"""
        #define _GNU_SOURCE
        #include <arpa/inet.h>
        #include <errno.h>
        #include <netinet/in.h>
        #include <stdio.h>
        #include <stdlib.h>
        #include <string.h>
        #include <sys/socket.h>
        #include <sys/syscall.h>
        #include <unistd.h>

        int main(int argc, char **argv) {
            if (argc != 4) return 2;
            if (strcmp(argv[1], "reexec") == 0) {   /* a program that re-executes itself */
                argv[1] = "serve";
                execv("/proc/self/exe", argv);
                perror("execv");
                return 1;
            }
            char params[120] = {0};                  /* struct io_uring_params */
            long ring = syscall(__NR_io_uring_setup, 4, params);
            printf("io_uring_setup: %s\n", ring < 0 ? strerror(errno) : "a ring");
            int listener = socket(AF_INET, SOCK_STREAM, 0), one = 1;
            setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
            struct sockaddr_in address = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[3])) };
            if (bind(listener, (struct sockaddr *)&address, sizeof(address)) != 0) { perror("bind"); return 1; }
            if (listen(listener, 64) != 0) { perror("listen"); return 1; }
            struct sockaddr_in name;
            socklen_t length = sizeof(name);
            getsockname(listener, (struct sockaddr *)&name, &length);
            printf("listening; getsockname says port %d\n", ntohs(name.sin_port));
            fflush(stdout);
            for (;;) {
                int connection = accept(listener, NULL, NULL);
                if (connection < 0) continue;
                length = sizeof(name);
                getsockname(connection, (struct sockaddr *)&name, &length);
                char line[256];
                int count = snprintf(line, sizeof(line), "%s on port %d\n", argv[2], ntohs(name.sin_port));
                if (write(connection, line, count) != count) perror("write");
                close(connection);
            }
        }
        """#

    func testStaticServerThatReexecutesItselfAndTriesIoUring() throws {
        try withExecEngine("static") { setup in
            try Self.staticServer.write(toFile: "\(setup.directory)/server.c", atomically: true, encoding: .utf8)
            let binary = "\(setup.directory)/server"
            try Command.checked(["cc", "-static", "-O2", "-o", binary, "\(setup.directory)/server.c"])
            let linkage = try Command.run(["ldd", binary])
            XCTAssertTrue((linkage.standardOutput + linkage.standardError).contains("not a dynamic executable"), "the server must be static")
            for aid in ["acme", "globex"] {
                _ = try setup.exec(aid, [binary, "reexec", aid, "9000"], log: "\(aid).log")
            }
            try NetworkLab.poll("both static servers to register", timeout: 15) {
                ((try? setup.apps()) ?? []).filter { !$0.processes.isEmpty }.count == 2
            }
            for app in try setup.apps() { try setup.lab.waitForListener(setup.lab.server, port: app.virtualPort) }
            for (index, aid) in ["acme", "globex"].enumerated() {
                let answer = try setup.lab.checked(setup.lab.clients[index], ["socat", "-T", "3", "STDIO", "TCP:\(setup.lab.server.address):9000"])
                XCTAssertEqual(answer.standardOutput, "\(aid) on port 9000\n", "the accepted socket's getsockname() says 9000")
                let log = setup.text("\(aid).log")
                XCTAssertTrue(log.contains("io_uring_setup: Function not implemented"), "io_uring refused with ENOSYS: \(log)")
                XCTAssertTrue(log.contains("listening; getsockname says port 9000"), log)
            }
            // The same binary without vpm exec gets a ring: the refusal above is the filter's.
            let plain = try setup.lab.run(setup.lab.server, ["timeout", "1", binary, "serve", "plain", "9999"])
            XCTAssertTrue(plain.standardOutput.contains("io_uring_setup: a ring"), plain.standardOutput + plain.standardError)
        }
    }

    /// Two unmodified Go programs (Go binds with raw syscalls, never through libc).
    func testTwoGoServersShareThePort() throws {
        try withExecEngine("caddy") { setup in
            var roots: [String] = []
            for aid in ["acme", "globex"] {
                let root = "\(setup.directory)/\(aid)-www"
                try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
                try "caddy of \(aid)\n".write(toFile: "\(root)/index.html", atomically: true, encoding: .utf8)
                try NetworkLab.makeRandomFile("\(root)/big.bin", count: 8 << 20)
                roots.append(root)
                // HOME and XDG dirs: caddy writes its state there; one each, as two tenants would have.
                _ = try setup.exec(aid, ["env", "HOME=\(setup.directory)/\(aid)-home", "XDG_DATA_HOME=\(setup.directory)/\(aid)-home",
                                         "XDG_CONFIG_HOME=\(setup.directory)/\(aid)-home",
                                         "caddy", "file-server", "--listen", ":9000", "--root", root], log: "\(aid)-caddy.log")
            }
            try NetworkLab.poll("both caddy servers to register", timeout: 20) {
                ((try? setup.apps()) ?? []).filter { !$0.processes.isEmpty }.count == 2
            }
            let apps = try setup.apps()
            XCTAssertEqual(Set(apps.map(\.virtualPort)).count, 2, "\(apps)")
            for app in apps { try setup.lab.waitForListener(setup.lab.server, port: app.virtualPort) }
            for (index, aid) in ["acme", "globex"].enumerated() {
                let client = setup.lab.clients[index]
                let page = try setup.lab.checked(client, ["curl", "-sS", "--max-time", "10", "http://\(setup.lab.server.address):9000/"])
                XCTAssertEqual(page.standardOutput, "caddy of \(aid)\n")
                let download = "\(setup.directory)/\(aid).download"
                try setup.lab.checked(client, ["curl", "-sS", "--max-time", "30", "-o", download, "http://\(setup.lab.server.address):9000/big.bin"])
                XCTAssertEqual(try NetworkLab.sha256(download), try NetworkLab.sha256("\(roots[index])/big.bin"))
            }
        }
    }

    // MARK: - Who may run instances (docs/security.md)

    /// `setpriv` to an unprivileged uid (no entry in /etc/passwd needed: the configuration
    /// names users and groups by number too), with the given groups.
    static func asUser(_ uid: Int, groups: [Int]) -> [String] {
        ["setpriv", "--reuid", "\(uid)", "--regid", "\(uid)",
         groups.isEmpty ? "--clear-groups" : "--groups=\(groups.map(String.init).joined(separator: ","))", "--"]
    }

    /// Control requests sent by hand (python3), with and without a socket attached.
    static let rawRequests = #"""
        import array, json, socket, sys
        path = sys.argv[1]
        def ask(name, request, attached=None):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as control:
                control.connect(path)
                line = (json.dumps(request) + "\n").encode()
                if attached is None:
                    control.sendall(line)
                else:
                    control.sendmsg([line], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [attached.fileno()]))])
                answer = json.loads(control.makefile().readline())
            print(name + ": " + (answer.get("error") or "ok"))
        client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        client.bind(("0.0.0.0", 0))
        connect = {"command": "connect", "transport": "udp", "remoteAddress": "198.18.0.1", "remotePort": 9000}
        ask("connect-globex", dict(connect, aid="globex"), client)
        ask("connect-unknown", dict(connect, aid="nosuch"), client)
        ask("connect-without-socket", dict(connect, aid="acme"))
        ask("connect-acme", dict(connect, aid="acme"), client)
        prebound = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        prebound.bind(("0.0.0.0", 0))
        ask("bind-prebound", {"command": "bind", "aid": "acme", "initialPort": 9000, "transport": "tcp", "localAddress": "0.0.0.0"}, prebound)
        print("bind-prebound mark: %d" % prebound.getsockopt(socket.SOL_SOCKET, 36))
        """#

    func testUnprivilegedUsersRunOnlyTheirOwnAIDs() throws {
        let configuration = """
            virtual-ports: 20000-20999
            ports: [9000]
            control: {group: "64100"}
            applications:
              acme: {users: ["64001"]}
              globex: {groups: ["64200"]}
            sources:
              - {from: 198.18.1.0/24, aid: acme}
              - {from: 198.18.2.0/24, aid: globex}
            """
        try withExecEngine("users", configuration: configuration) { setup in
            let (lab, engine) = (setup.lab, setup.engine)
            func exec(_ user: [String], _ aid: String, _ log: String) throws -> BackgroundProcess {
                try lab.spawn(lab.server, user + [setup.vpm, "exec", "--aid", aid, "--config", engine.configurationPath,
                                                  "--socket", engine.socketPath, "--",
                                                  "socat", "TCP-LISTEN:9000,reuseaddr,fork", "SYSTEM:echo \(aid) as $(id -u)"],
                              log: "\(setup.directory)/\(log)")
            }
            let alice = Self.asUser(64001, groups: [64100])            // named in acme's users
            let bob = Self.asUser(64002, groups: [64100, 64200])       // in globex's group
            let mallory = Self.asUser(64003, groups: [])               // not in the control group

            // alice runs acme with no privileges; bob runs globex through his group.
            _ = try exec(alice, "acme", "alice-acme.log")
            _ = try exec(bob, "globex", "bob-globex.log")
            try NetworkLab.poll("both instances", timeout: 15) { ((try? setup.apps()) ?? []).filter { !$0.processes.isEmpty }.count == 2 }
            for app in try setup.apps() { try lab.waitForListener(lab.server, port: app.virtualPort) }
            XCTAssertEqual(try lab.checked(lab.clients[0], ["socat", "-T", "3", "STDIO", "TCP:\(lab.server.address):9000"]).standardOutput, "acme as 64001\n")
            XCTAssertEqual(try lab.checked(lab.clients[1], ["socat", "-T", "3", "STDIO", "TCP:\(lab.server.address):9000"]).standardOutput, "globex as 64002\n")

            // alice asking for globex: refused, naming the AID and the rule; the program's bind fails.
            let refused = try lab.run(lab.server, alice + [setup.vpm, "exec", "--aid", "globex", "--config", engine.configurationPath,
                                                          "--socket", engine.socketPath, "--", "socat", "TCP-LISTEN:9000", "STDIO"], timeout: 20)
            XCTAssertNotEqual(refused.status, 0)
            XCTAssertTrue(refused.standardError.contains("vpm: cannot bind port 9000/tcp for AID globex: permission denied: uid 64001 may not run instances of AID globex"), refused.standardError)
            XCTAssertTrue(refused.standardError.contains("applications.globex allows no users and groups [64200]"), refused.standardError)
            XCTAssertTrue(refused.standardError.contains("Permission denied"), "socat's own bind error: \(refused.standardError)")
            XCTAssertEqual(try setup.apps().count, 2, "the refused bind registered nothing")

            // The control group may read; anyone else cannot even connect.
            let reading = try lab.run(lab.server, alice + [setup.vpm, "apps", "--socket", engine.socketPath])
            XCTAssertEqual(reading.status, 0, reading.standardError)
            XCTAssertTrue(reading.standardOutput.contains("globex"), reading.standardOutput)
            for command in [["apps"], ["flows"], ["stats"]] {
                let outsider = try lab.run(lab.server, mallory + [setup.vpm] + command + ["--socket", engine.socketPath])
                XCTAssertNotEqual(outsider.status, 0)
                XCTAssertTrue(outsider.standardError.contains("permission denied on \(engine.socketPath)"), outsider.standardError)
            }
            let outsiderExec = try lab.run(lab.server, mallory + [setup.vpm, "exec", "--aid", "acme", "--config", engine.configurationPath,
                                                                  "--socket", engine.socketPath, "--", "socat", "TCP-LISTEN:9000", "STDIO"], timeout: 20)
            XCTAssertNotEqual(outsiderExec.status, 0)
            XCTAssertTrue(outsiderExec.standardError.contains("permission denied on \(engine.socketPath)"), outsiderExec.standardError)
            XCTAssertTrue(outsiderExec.standardError.contains("Permission denied"), "socat's own bind error is EACCES: \(outsiderExec.standardError)")
            // Raw requests, as a user could write them by hand: the engine decides, not vpm exec.
            let script = "\(setup.directory)/requests.py"
            try Self.rawRequests.write(toFile: script, atomically: true, encoding: .utf8)
            let raw = try lab.run(lab.server, alice + ["/usr/bin/python3", script, engine.socketPath])
            XCTAssertEqual(raw.status, 0, raw.standardError)
            let answers = raw.standardOutput
            XCTAssertTrue(answers.contains("connect-globex: permission denied: uid 64001 may not run instances of AID globex"), answers)
            XCTAssertTrue(answers.contains("connect-unknown: AID 'nosuch' is not in the configuration"), answers)
            XCTAssertTrue(answers.contains("connect-without-socket: a connect registration carries the program's socket"), answers)
            XCTAssertTrue(answers.contains("connect-acme: ok"), answers)
            XCTAssertTrue(answers.contains("bind-prebound: cannot bind this socket for AID acme: the socket is already bound"), answers)
            XCTAssertTrue(answers.contains("bind-prebound mark: 0"), "a socket the engine did not bind stays unmarked: \(answers)")
            let mode = try FileManager.default.attributesOfItem(atPath: engine.socketPath)
            XCTAssertEqual((mode[.posixPermissions] as? NSNumber)?.intValue, 0o660)
            XCTAssertEqual((mode[.groupOwnerAccountID] as? NSNumber)?.intValue, 64100)
        }
    }

    // MARK: - Virtual ports belong to their instances (docs/security.md)

    func testTheProgramDiesWithItsSupervisor() throws {
        try withExecEngine("orphan") { setup in
            // vpm exec (the front) → its supervisor → the program.
            let front = try setup.exec("acme", ["sleep", "300"], log: "sleep.log")
            func firstChild(_ pid: Int32) -> Int32 {
                let children = (try? String(contentsOfFile: "/proc/\(pid)/task/\(pid)/children", encoding: .utf8)) ?? ""
                return Int32(children.split(separator: " ").first ?? "") ?? 0
            }
            var child: Int32 = 0
            try NetworkLab.poll("vpm exec to start sleep", timeout: 10) {
                let supervisor = firstChild(front.processIdentifier)
                child = supervisor > 0 ? firstChild(supervisor) : 0
                return child > 0
            }
            XCTAssertTrue(((try? String(contentsOfFile: "/proc/\(child)/cmdline", encoding: .utf8)) ?? "").hasPrefix("sleep"))
            kill(front.processIdentifier, SIGKILL)
            try NetworkLab.poll("the program to die with vpm exec", timeout: 10) {
                !FileManager.default.fileExists(atPath: "/proc/\(child)/cmdline")
                    || ((try? String(contentsOfFile: "/proc/\(child)/stat", encoding: .utf8)) ?? "").contains(") Z")
            }
        }
    }

    /// Under a systemd Type=notify unit, vpm exec is the unit's main process: the program's
    /// own READY=1 reaches NOTIFY_SOCKET from vpm exec's pid, which systemd accepts.
    func testTheProgramsNotificationsReachTheNotifySocketFromVpmExec() throws {
        try withExecEngine("notify") { setup in
            let receiver = "\(setup.directory)/receive.py"
            try #"""
                import socket, struct, sys
                s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                s.bind(sys.argv[1]); s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1); s.settimeout(20)
                while True:  # READY=1, BARRIER=1 (systemd-notify's), FDSTORE=1 with a descriptor, STOPPING=1
                    message, ancillary, _, _ = s.recvmsg(4096, socket.CMSG_SPACE(12) + socket.CMSG_SPACE(16))
                    pid = [struct.unpack("iII", data[:12])[0] for level, kind, data in ancillary if kind == socket.SCM_CREDENTIALS]
                    fds = sum(len(data) // 4 for level, kind, data in ancillary if kind == socket.SCM_RIGHTS)
                    print(message.decode().replace("\n", " ").strip(), "from", pid[0], "fds", fds, flush=True)
                    if b"STOPPING=1" in message: break
                """#.write(toFile: receiver, atomically: true, encoding: .utf8)
            // What a program storing a descriptor with systemd sends (sd_pid_notify_with_fds).
            let storing = "\(setup.directory)/store.py"
            try #"""
                import array, os, socket
                target = os.environ["NOTIFY_SOCKET"]
                address = "\0" + target[1:] if target.startswith("@") else target
                s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                s.sendmsg([b"FDSTORE=1\nFDNAME=kept"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [0]))], 0, address)
                """#.write(toFile: storing, atomically: true, encoding: .utf8)
            // A process of the same user in another cgroup (under systemd: another unit, such as
            // another AID's instance) that finds the relay's name and speaks for the unit.
            let outsider = "\(setup.directory)/outsider.py"
            let cgroupBase = FileManager.default.fileExists(atPath: "/sys/fs/cgroup/cgroup.controllers") ? "/sys/fs/cgroup" : "/sys/fs/cgroup/unified"
            let cgroup = "\(cgroupBase)/vpmt-notify-\(getpid())"
            defer { rmdir(cgroup) }
            try #"""
                import os, socket, sys, time
                cgroup, target = sys.argv[1], open(sys.argv[2]).read().strip()
                os.makedirs(cgroup, exist_ok=True)
                open(cgroup + "/cgroup.procs", "w").write(str(os.getpid()))
                address = "\0" + target[1:] if target.startswith("@") else target
                socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b"STATUS=from another cgroup", address)
                time.sleep(1)  # alive, and still there, while the relay looks at where it is
                """#.write(toFile: outsider, atomically: true, encoding: .utf8)
            let socketPath = "\(setup.directory)/notify.sock"
            let listening = try setup.lab.spawn(setup.lab.server, ["python3", receiver, socketPath], log: "\(setup.directory)/received.log")
            try NetworkLab.poll("the notify socket", timeout: 10) { FileManager.default.fileExists(atPath: socketPath) }
            let front = try setup.lab.spawn(setup.lab.server, ["env", "NOTIFY_SOCKET=\(socketPath)", setup.vpm, "exec", "--aid", "acme",
                                                               "--config", setup.engine.configurationPath, "--socket", setup.engine.socketPath, "--",
                                                               "sh", "-c", "systemd-notify --ready --status=serving; echo program=$$; python3 \(storing); echo $NOTIFY_SOCKET > \(setup.directory)/relay; while [ ! -e \(setup.directory)/sent ]; do sleep 0.05; done; systemd-notify STOPPING=1"],
                                            log: "\(setup.directory)/front.log")
            try NetworkLab.poll("the program to say where its notify socket is", timeout: 10) { !setup.text("relay").isEmpty }
            // nsenter, not `ip netns exec`: the latter's private /sys has no cgroups.
            try Command.checked(["nsenter", "--net=/var/run/netns/\(setup.lab.server.namespace)",
                                 "python3", outsider, cgroup, "\(setup.directory)/relay"])
            FileManager.default.createFile(atPath: "\(setup.directory)/sent", contents: nil)
            try NetworkLab.poll("vpm exec and the receiver to finish", timeout: 20) { !front.isRunning && !listening.isRunning }
            XCTAssertEqual(front.terminationStatus, 0, setup.text("front.log"))
            XCTAssertEqual(listening.terminationStatus, 0, setup.text("received.log"))
            let received = setup.text("received.log")
            XCTAssertTrue(received.contains("READY=1 STATUS=serving from \(front.processIdentifier) fds 0\n"), received)
            XCTAssertTrue(received.contains("FDSTORE=1 FDNAME=kept from \(front.processIdentifier) fds 1\n"), "the descriptor went along: \(received)")
            XCTAssertTrue(received.contains("STOPPING=1 from \(front.processIdentifier) fds 0\n"), received)
            XCTAssertFalse(received.contains("another cgroup"), "a process outside vpm exec's cgroup speaks for nobody: \(received)")
            XCTAssertFalse(setup.text("front.log").contains("program=\(front.processIdentifier)"), "the program is not vpm exec itself")
        }
    }

    func testTheEngineRefusesAVirtualRangeInsideTheEphemeralPorts() throws {
        try withExecEngine("ephemeral") { setup in
            try "virtual-ports: 40000-40999\nports: [9000]\napplications: {acme: {}}\n"
                .write(toFile: "\(setup.directory)/overlap.yaml", atomically: true, encoding: .utf8)
            let output = try setup.lab.run(setup.lab.server, [setup.vpm, "run", "--config", "\(setup.directory)/overlap.yaml",
                                                              "--socket", "\(setup.directory)/overlap.sock"], timeout: 30)
            XCTAssertNotEqual(output.status, 0)
            XCTAssertTrue(output.standardError.contains("overlap the ephemeral port range"), output.standardError)
            XCTAssertTrue(output.standardError.contains("sysctl -w net.ipv4.ip_local_reserved_ports=40000-40999"), output.standardError)
            // check-config (the unit's ExecStartPre) refuses the same file, with the same advice.
            let checked = try setup.lab.run(setup.lab.server, [setup.vpm, "check-config", "\(setup.directory)/overlap.yaml"], timeout: 30)
            XCTAssertEqual(checked.status, 1)
            XCTAssertTrue(checked.standardError.contains("vpm run would refuse it on this host: virtual-ports 40000-40999 overlap the ephemeral port range"),
                          checked.standardError)
            XCTAssertTrue(checked.standardError.contains("sysctl -w net.ipv4.ip_local_reserved_ports=40000-40999"), checked.standardError)
        }
    }

    func testNobodyDialsAVirtualPortDirectly() throws {
        try withExecEngine("direct") { setup in
            let lab = setup.lab
            _ = try setup.exec("acme", ["socat", "TCP6-LISTEN:9000,ipv6only=0,reuseaddr,fork", "SYSTEM:echo acme"], log: "acme.log")
            try NetworkLab.poll("acme to register", timeout: 10) { ((try? setup.apps()) ?? []).count == 1 }
            let port = try XCTUnwrap(setup.apps().first?.virtualPort)
            try lab.waitForListener(lab.server, port: port)
            // Through the initial port, acme's client gets acme over each family: the instance works.
            for family in NetworkLab.AddressFamily.allCases {
                XCTAssertEqual(try lab.checked(lab.clients[0], ["socat", "-T", "3", "STDIO",
                                                                "TCP:\(NetworkLab.endpoint(lab.server.address(family), 9000))"]).standardOutput, "acme\n")
            }
            // A client of another AID (and acme's own) dialing the virtual port, either family: nothing.
            for client in lab.clients.prefix(2) {
                for family in NetworkLab.AddressFamily.allCases {
                    let target = NetworkLab.endpoint(lab.server.address(family), port)
                    let direct = try lab.run(client, ["socat", "-T", "2", "STDIO", "TCP:\(target),connect-timeout=2"])
                    XCTAssertNotEqual(direct.status, 0, "\(client.address(family)) reached the virtual port directly")
                    XCTAssertFalse(direct.standardOutput.contains("acme"))
                }
            }
            // A local program, unprivileged or root, over loopback or the host's own address,
            // either family: refused.
            for user in [Self.asUser(64003, groups: []), []] {
                for address in ["127.0.0.1", lab.server.address, "::1", lab.server.address6] {
                    let target = NetworkLab.endpoint(address, port)
                    let local = try lab.run(lab.server, user + ["socat", "-T", "2", "STDIO", "TCP:\(target),connect-timeout=2"])
                    XCTAssertNotEqual(local.status, 0, "\(user) reached \(address):\(port)")
                    XCTAssertFalse(local.standardOutput.contains("acme"))
                    XCTAssertTrue(local.standardError.contains("Connection refused"), "refused at once: \(local.standardError)")
                }
            }
        }
    }

    /// A UDP client of acme keeps sending after acme's instance is gone; on the kernel
    /// datapath conntrack keeps its translation to acme's old virtual port alive. globex's
    /// instance, which binds next, must not get that port (kernel datapath), nor a single
    /// acme datagram (both; the userspace datapath forgets the flows with the instance).
    func testAnotherAIDsUDPInstanceGetsNoneOfAGoneInstancesClients() throws {
        let configuration = Self.configuration().replacingOccurrences(of: "ports: [9000]", with: "ports: [9000, 5353/udp]")
        try withExecEngine("udpreuse", configuration: configuration) { setup in
            let lab = setup.lab
            let acme = try setup.exec("acme", ["socat", "-u", "UDP-RECV:5353", "OPEN:\(setup.directory)/acme.udp,creat,append"], log: "acme.log")
            try NetworkLab.poll("acme to register", timeout: 10) { ((try? setup.apps()) ?? []).count == 1 }
            let sender = """
                import socket, sys, time
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("", 40000))
                end = time.monotonic() + float(sys.argv[3])
                while time.monotonic() < end:
                    s.sendto(sys.argv[2].encode() + b"\\n", (sys.argv[1], 5353)); time.sleep(0.1)
                """
            try sender.write(toFile: "\(setup.directory)/sender.py", atomically: true, encoding: .utf8)
            let acmeClient = try lab.spawn(lab.clients[0], ["python3", "\(setup.directory)/sender.py", lab.server.address, "acme", "40"],
                                           log: "\(setup.directory)/acme-client.log")
            defer { lab.stop(acmeClient) }
            try NetworkLab.poll("acme's datagrams to arrive", timeout: 10) { setup.text("acme.udp").contains("acme") }
            let acmePort = try XCTUnwrap(setup.apps().first?.virtualPort)

            sleep(3)  // past the grace period after the bind
            kill(acme.processIdentifier, SIGKILL)
            try NetworkLab.poll("acme's port to be released", timeout: 15) { (try? setup.apps())?.isEmpty ?? false }
            sleep(1)  // the decision maps have dropped acme's port by now: only conntrack still routes to it
            _ = try setup.exec("globex", ["socat", "-u", "UDP-RECV:5353", "OPEN:\(setup.directory)/globex.udp,creat,append"], log: "globex.log")
            try NetworkLab.poll("globex to register", timeout: 10) { ((try? setup.apps()) ?? []).contains { $0.aid == "globex" } }
            let globexPort = try XCTUnwrap(setup.apps().first { $0.aid == "globex" }?.virtualPort)
            if Privileged.decidesInKernel {
                XCTAssertNotEqual(globexPort, acmePort, "acme's client is still translated to its old port in conntrack")
            }
            let globexClient = try lab.spawn(lab.clients[1], ["python3", "\(setup.directory)/sender.py", lab.server.address, "globex", "3"],
                                             log: "\(setup.directory)/globex-client.log")
            globexClient.waitUntilExit()
            try NetworkLab.poll("globex's datagrams to arrive", timeout: 10) { setup.text("globex.udp").contains("globex") }
            sleep(1)
            XCTAssertFalse(setup.text("globex.udp").contains("acme"), "globex's instance received acme's datagrams")
        }
    }

    /// A client that dials again from the port it just used, while the server host still
    /// holds the last connection in TIME_WAIT (the instance closed first), is served: the
    /// ownership check finds the TIME_WAIT socket, which has no mark to restore, and must
    /// leave the SYN to the kernel rather than refuse it.
    func testAClientReusingItsPortWhileTheInstanceHoldsTimeWaitIsServed() throws {
        try withExecEngine("timewait") { setup in
            let lab = setup.lab
            _ = try setup.exec("acme", ["socat", "TCP6-LISTEN:9000,ipv6only=0,reuseaddr,fork", "SYSTEM:echo acme"], log: "acme.log")
            try NetworkLab.poll("acme to register", timeout: 10) { ((try? setup.apps()) ?? []).count == 1 }
            let port = try XCTUnwrap(setup.apps().first?.virtualPort)
            try lab.waitForListener(lab.server, port: port)
            for (family, clientPort) in [(NetworkLab.AddressFamily.ipv4, 40123), (.ipv6, 40124)] {
                // -u: the client only reads, so the instance's side closes first and keeps TIME_WAIT.
                // Refused, the SYN would get a reset or wait out the TIME_WAIT (a minute): the
                // connect timeout tells that from being served.
                let dial = ["socat", "-T", "3", "-u", "TCP:\(NetworkLab.endpoint(lab.server.address(family), 9000)),sourceport=\(clientPort),reuseaddr,connect-timeout=5", "STDOUT"]
                XCTAssertEqual(try lab.checked(lab.clients[0], dial).standardOutput, "acme\n")
                // The socket datapath translates nothing: the instance's side is on port 9000.
                let serverPort = Privileged.datapath == "socket" ? 9000 : port
                try NetworkLab.poll("TIME_WAIT on the server for client port \(clientPort)", timeout: 5) {
                    let states = (try? lab.run(lab.server, ["ss", "-Htan", "state", "time-wait", "sport = :\(serverPort)"]))?.standardOutput ?? ""
                    return states.contains(":\(clientPort)")
                }
                let again = try lab.run(lab.clients[0], dial)
                XCTAssertEqual(again.standardOutput, "acme\n", "\(family) from port \(clientPort) again: \(again.standardError)")
            }
        }
    }

    func testAnotherUserTakingAnExitedInstancesPortGetsNoClients() throws {
        try withExecEngine("takeover") { setup in
            let lab = setup.lab
            let globex = try setup.exec("globex", ["socat", "TCP-LISTEN:9000,reuseaddr,fork", "SYSTEM:echo globex"], log: "globex.log")
            try NetworkLab.poll("globex to register", timeout: 10) { ((try? setup.apps()) ?? []).count == 1 }
            let port = try XCTUnwrap(setup.apps().first?.virtualPort)
            try lab.waitForListener(lab.server, port: port)
            XCTAssertEqual(try lab.checked(lab.clients[1], ["socat", "-T", "3", "STDIO", "TCP:\(lab.server.address):9000"]).standardOutput, "globex\n")

            // globex stops; at once another user binds its virtual port.
            lab.stop(globex)
            _ = try lab.spawn(lab.server, Self.asUser(64003, groups: []) + ["socat", "TCP-LISTEN:\(port),reuseaddr,fork", "SYSTEM:echo stolen"],
                              log: "\(setup.directory)/thief.log")
            try lab.waitForListener(lab.server, port: port)
            // globex's clients are refused, before and after the engine notices.
            let deadline = Date().addingTimeInterval(6)
            var attempts = 0
            repeat {
                let attempt = try lab.run(lab.clients[1], ["socat", "-T", "2", "STDIO", "TCP:\(lab.server.address):9000,connect-timeout=2"])
                XCTAssertFalse(attempt.standardOutput.contains("stolen"), "globex's client was handed to another user's socket")
                XCTAssertNotEqual(attempt.status, 0)
                attempts += 1
                usleep(300_000)
            } while Date() < deadline
            XCTAssertGreaterThan(attempts, 3)
            try NetworkLab.poll("vpm apps to drop globex", timeout: 15) { (try? setup.apps())?.isEmpty ?? false }
            // The registry lets go first; the line follows once the port's flows are removed.
            try NetworkLab.poll("the engine to log the release", timeout: 5) { setup.engine.log.contains("virtual port released") }
            let stillThere = try lab.run(lab.server, ["socat", "-T", "2", "STDIO", "TCP:127.0.0.1:\(port),connect-timeout=2"])
            XCTAssertFalse(stillThere.standardOutput.contains("stolen"), "the port is still guarded locally")
        }
    }
}
