import Control
import Foundation
import NetworkLab
import TestSupport
import XCTest

/// Servers started the way their own docs start them, each of which forks into the background
/// and returns: `vpm exec` returns with them, and what they left running stays an instance
/// (served, isolated, in `vpm apps`) until it is stopped by its own means, which releases its
/// port and ends its supervisor. Two AIDs each run a copy on port 9000.
final class DaemonTests: XCTestCase {
    private let aids = ["acme", "globex"]

    /// `vpm exec --aid AID -- arguments`, run to completion: a daemon's start command must
    /// return (the time limit fails the test otherwise) with `status`.
    @discardableResult
    private func start(_ setup: ExecSetup, _ aid: String, as user: [String] = [], _ arguments: [String], status: Int32 = 0) throws -> CommandOutput {
        let output = try setup.lab.run(setup.lab.server, user + [setup.vpm, "exec", "--aid", aid, "--config", setup.engine.configurationPath,
                                                                 "--socket", setup.engine.socketPath, "--"] + arguments, timeout: 30)
        XCTAssertEqual(output.status, status, "vpm exec \(arguments.joined(separator: " ")): \(output.standardError)")
        return output
    }

    /// Waits until each AID has a registered instance with a process, then for its listener.
    private func waitForInstances(_ setup: ExecSetup, _ what: String) throws {
        try NetworkLab.poll("\(what) of both AIDs to register", timeout: 20) {
            Set(((try? setup.apps()) ?? []).filter { !$0.processes.isEmpty }.map(\.aid)) == Set(aids)
        }
        for app in try setup.apps() { try setup.lab.waitForListener(setup.lab.server, port: app.virtualPort) }
    }

    /// After the daemons were stopped by their own means: no instance is left, and no
    /// supervisor either (each ends with the last process it supervised).
    private func waitForNothingLeft(_ setup: ExecSetup, _ what: String) throws {
        var apps: [AppRecord] = []
        try NetworkLab.poll("\(what)'s ports to be released", timeout: 20) {
            apps = (try? setup.apps()) ?? apps
            return apps.allSatisfy { $0.processes.isEmpty }
        }
        XCTAssertFalse(apps.isEmpty, "the engine answered: its instances are listed, without processes")
        try NetworkLab.poll("\(what)'s supervisors to exit", timeout: 10) { (try? Self.supervisors(in: setup.lab))?.isEmpty ?? false }
    }

    /// `vpm exec` processes still running in the server's namespace.
    private static func supervisors(in lab: NetworkLab) throws -> [Int32] {
        let pids = try Command.checked(["ip", "netns", "pids", lab.server.namespace], timeout: 10).standardOutput
        return pids.split(separator: "\n").compactMap { Int32($0) }.filter { pid in
            let command = (try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8)) ?? ""
            return command.contains("vpm\u{0}exec\u{0}")
        }
    }

    private func client(_ setup: ExecSetup, _ aid: String) -> NetworkLab.Host {
        setup.lab.clients[aids.firstIndex(of: aid)!]
    }

    func testRedisDaemonizes() throws {
        try withExecEngine("redis-daemon") { setup in
            let lab = setup.lab, server = lab.server.address
            for aid in aids {
                let directory = "\(setup.directory)/redis-\(aid)"
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
                try start(setup, aid, ["redis-server", "--port", "9000", "--daemonize", "yes", "--pidfile", "\(directory)/redis.pid",
                                       "--dir", directory, "--logfile", "\(directory)/redis.log", "--save", "", "--appendonly", "no",
                                       "--protected-mode", "no", "--bind", "*", "-::*"])
            }
            try waitForInstances(setup, "redis")
            XCTAssertFalse(try Self.supervisors(in: lab).isEmpty, "the daemons are still supervised")
            let blob = "\(setup.directory)/blob.bin"
            try NetworkLab.makeRandomFile(blob, count: 1 << 20)
            for aid in aids {
                let cli = "redis-cli -h \(server) -p 9000"
                XCTAssertEqual(try lab.checked(client(setup, aid), ["redis-cli", "-h", server, "-p", "9000", "set", "marker", aid]).standardOutput, "OK\n")
                try lab.checked(client(setup, aid), ["sh", "-c", "\(cli) -x set blob < \(blob)"])
                let copy = "\(setup.directory)/\(aid).blob"
                try lab.checked(client(setup, aid), ["sh", "-c", "\(cli) --raw get blob | head -c -1 > \(copy)"])
                XCTAssertEqual(try NetworkLab.sha256(copy), try NetworkLab.sha256(blob), "\(aid)'s copy of the blob")
            }
            for aid in aids {
                XCTAssertEqual(try lab.checked(client(setup, aid), ["redis-cli", "-h", server, "-p", "9000", "get", "marker"]).standardOutput,
                               "\(aid)\n", "each AID sees its own redis only")
            }
            // Stopped as without vpm: acme's by its client (SHUTDOWN), globex's through its pid file.
            _ = try lab.run(client(setup, "acme"), ["redis-cli", "-h", server, "-p", "9000", "shutdown", "nosave"])
            let pid = try String(contentsOfFile: "\(setup.directory)/redis-globex/redis.pid", encoding: .utf8)
            try lab.checked(lab.server, ["kill", pid.trimmingCharacters(in: .whitespacesAndNewlines)])
            try waitForNothingLeft(setup, "redis")
        }
    }

    func testNginxWithItsDefaultDaemonOn() throws {
        try withExecEngine("nginx-daemon") { setup in
            let lab = setup.lab
            var sites: [String: NginxSite] = [:]
            for aid in aids {
                let site = try NginxSite(root: "\(setup.directory)/nginx-\(aid)", content: "served by \(aid)\n", daemon: true)
                try NetworkLab.makeRandomFile("\(site.root)/www/big.bin", count: 4 << 20)
                try start(setup, aid, site.command)
                sites[aid] = site
            }
            try waitForInstances(setup, "nginx")
            for aid in aids {
                for family in NetworkLab.AddressFamily.allCases {
                    let url = "http://\(NetworkLab.endpoint(lab.server.address(family), 9000))"
                    XCTAssertEqual(try lab.checked(client(setup, aid), ["curl", "-sS", "--max-time", "10", "\(url)/"]).standardOutput, "served by \(aid)\n")
                    let download = "\(setup.directory)/\(aid).\(family).download"
                    try lab.checked(client(setup, aid), ["curl", "-sS", "--max-time", "30", "-o", download, "\(url)/big.bin"])
                    XCTAssertEqual(try NetworkLab.sha256(download), try NetworkLab.sha256("\(sites[aid]!.root)/www/big.bin"))
                }
            }
            for site in sites.values { try lab.checked(lab.server, site.stopCommand) }
            try waitForNothingLeft(setup, "nginx")
        }
    }

    func testMemcachedDashD() throws {
        try withExecEngine("memcached-daemon") { setup in
            let lab = setup.lab
            let pids = "\(setup.directory)/memcached"
            try FileManager.default.createDirectory(atPath: pids, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o777])
            for aid in aids {
                try start(setup, aid, ["memcached", "-d", "-p", "9000", "-U", "0", "-u", "memcache", "-P", "\(pids)/\(aid).pid"])
            }
            try waitForInstances(setup, "memcached")
            func talk(_ aid: String, _ requests: String) throws -> String {
                try lab.checked(client(setup, aid), ["sh", "-c", "printf '\(requests)quit\\r\\n' | socat -T 5 - TCP:\(lab.server.address):9000"]).standardOutput
            }
            for aid in aids {
                XCTAssertEqual(try talk(aid, "set marker 0 0 \(aid.utf8.count)\\r\\n\(aid)\\r\\n"), "STORED\r\n")
            }
            for aid in aids {
                XCTAssertEqual(try talk(aid, "get marker\\r\\n"), "VALUE marker 0 \(aid.utf8.count)\r\n\(aid)\r\nEND\r\n", "each AID sees its own memcached only")
            }
            for aid in aids {
                let pid = try String(contentsOfFile: "\(pids)/\(aid).pid", encoding: .utf8)
                try lab.checked(lab.server, ["kill", pid.trimmingCharacters(in: .whitespacesAndNewlines)])
            }
            try waitForNothingLeft(setup, "memcached")
        }
    }

    func testPostgresThroughPgCtlStart() throws {
        let configuration = """
            virtual-ports: 20000-20999
            ports: [9000]
            control: {group: postgres}
            applications:
              acme: {users: [postgres]}
              globex: {users: [postgres]}
            sources:
              - {from: 198.18.1.0/24, aid: acme}
              - {from: 198.18.2.0/24, aid: globex}
              - {from: 2001:db8:0:1::/64, aid: acme}
              - {from: 2001:db8:0:2::/64, aid: globex}
            """
        try withExecEngine("postgres-daemon", configuration: configuration) { setup in
            let lab = setup.lab
            let binaries = try XCTUnwrap(try FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql").sorted().last
                .map { "/usr/lib/postgresql/\($0)/bin" }, "Debian's postgresql is installed (scripts/install-deps.sh)")
            let postgres = ["runuser", "-u", "postgres", "--"]
            try Command.checked(["chmod", "755", setup.directory])
            for aid in aids {
                let data = "\(setup.directory)/pg-\(aid)"
                try Command.checked(["install", "-d", "-o", "postgres", "-g", "postgres", "-m", "700", data])
                try Command.checked(postgres + ["\(binaries)/initdb", "-D", data, "-U", "postgres", "-A", "trust", "--no-sync"], timeout: 120)
                let settings = try FileHandle(forWritingTo: URL(fileURLWithPath: "\(data)/postgresql.conf"))
                settings.seekToEndOfFile()
                settings.write(Data("port = 9000\nlisten_addresses = '*'\nunix_socket_directories = '\(data)'\nfsync = off\n".utf8))
                try settings.close()
                let access = try FileHandle(forWritingTo: URL(fileURLWithPath: "\(data)/pg_hba.conf"))
                access.seekToEndOfFile()
                access.write(Data("host all all 0.0.0.0/0 trust\nhost all all ::/0 trust\n".utf8))
                try access.close()
                try start(setup, aid, as: postgres, ["\(binaries)/pg_ctl", "-D", data, "-l", "\(data)/server.log", "-w", "start"])
            }
            try waitForInstances(setup, "postgres")
            for aid in aids {
                for family in NetworkLab.AddressFamily.allCases {
                    let sql = "insert into marker values ('\(aid) over \(family)')"
                    try lab.checked(client(setup, aid), ["psql", "-h", lab.server.address(family), "-p", "9000", "-U", "postgres", "-Atq",
                                                         "-c", "create table if not exists marker (v text)", "-c", sql])
                }
            }
            for aid in aids {
                let rows = try lab.checked(client(setup, aid), ["psql", "-h", lab.server.address, "-p", "9000", "-U", "postgres", "-At",
                                                                "-c", "select v from marker order by v"]).standardOutput
                XCTAssertEqual(rows, NetworkLab.AddressFamily.allCases.map { "\(aid) over \($0)\n" }.sorted().joined(),
                               "each AID sees its own postgres only")
            }
            for aid in aids {
                try lab.checked(lab.server, postgres + ["\(binaries)/pg_ctl", "-D", "\(setup.directory)/pg-\(aid)", "-m", "fast", "-w", "stop"])
            }
            try waitForNothingLeft(setup, "postgres")
        }
    }

    /// A program that daemonizes by hand (fork, setsid, fork) and whose first process exits
    /// with 3: vpm exec returns 3 at once, and the grandchild serves as the instance.
    func testADoubleForkingProgram() throws {
        try withExecEngine("double-fork") { setup in
            let lab = setup.lab
            let source = "\(setup.directory)/daemon.c", binary = "\(setup.directory)/daemon"
            try #"""
                #include <netinet/in.h>
                #include <stdio.h>
                #include <stdlib.h>
                #include <string.h>
                #include <sys/socket.h>
                #include <unistd.h>
                int main(int argc, char **argv) {
                    if (argc != 3) return 2;
                    if (fork() != 0) return 3;            /* the first process: vpm exec returns this */
                    setsid();
                    if (fork() != 0) _exit(0);
                    int listener = socket(AF_INET6, SOCK_STREAM, 0), off = 0, on = 1;
                    setsockopt(listener, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off));
                    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
                    struct sockaddr_in6 address = { .sin6_family = AF_INET6, .sin6_port = htons(9000) };
                    if (bind(listener, (struct sockaddr *)&address, sizeof(address)) != 0 || listen(listener, 16) != 0) return 1;
                    FILE *pidfile = fopen(argv[2], "w");
                    fprintf(pidfile, "%d\n", getpid());
                    fclose(pidfile);
                    for (;;) {
                        int connection = accept(listener, NULL, NULL);
                        if (connection < 0) continue;
                        dprintf(connection, "served by %s\n", argv[1]);
                        close(connection);
                    }
                }
                """#.write(toFile: source, atomically: true, encoding: .utf8)
            try Command.checked(["cc", "-O2", "-o", binary, source])
            for aid in aids { try start(setup, aid, [binary, aid, "\(setup.directory)/\(aid).pid"], status: 3) }
            try waitForInstances(setup, "the double-forked servers")
            for aid in aids {
                XCTAssertEqual(try lab.checked(client(setup, aid), ["socat", "-T", "3", "STDIO", "TCP:\(lab.server.address):9000"]).standardOutput,
                               "served by \(aid)\n")
            }
            for aid in aids {
                let pid = try String(contentsOfFile: "\(setup.directory)/\(aid).pid", encoding: .utf8)
                try lab.checked(lab.server, ["kill", pid.trimmingCharacters(in: .whitespacesAndNewlines)])
            }
            try waitForNothingLeft(setup, "the double-forked servers")
        }
    }
}
