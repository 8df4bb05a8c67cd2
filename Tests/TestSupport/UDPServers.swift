import Control
public import Foundation
public import NetworkLab

/// Real UDP servers for the tests: Debian's dnsmasq answering a TXT record that names its
/// AID, and a client that loads it with DNS queries and counts whose answers came back.
public enum UDPServers {
    /// dnsmasq in the foreground on `port` (UDP and TCP, every address of both families),
    /// answering `TXT svc.test` with `text`; nothing else (no upstream, no hosts file).
    public static func dnsmasq(port: UInt16, text: String, directory: String) -> [String] {
        ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--port=\(port)", "--no-resolv", "--no-hosts",
         "--user=root", "--group=root", "--pid-file=\(directory)/dnsmasq-\(text).pid", "--txt-record=svc.test,\(text)",
         "--log-facility=-"]
    }

    /// `python3 SCRIPT SERVER PORT COUNT [connect|sendto|sendmsg [SOURCEPORT]]`: COUNT TXT queries for svc.test, at most 32
    /// outstanding, each retried once after a second without an answer. First, from another
    /// socket (another flow), one query answered: the path's neighbor caches are filled, so
    /// the load's first burst does not wait out a neighbor solicitation. Prints one JSON
    /// object: {"sent", "answers": {TEXT: count}, "retried", "unanswered"}. With `connect`,
    /// the socket is connected first (connect(2)); with `sendmsg`, every query is an
    /// unconnected sendmsg(2); otherwise an unconnected sendto(2). With SOURCEPORT, the socket is bound to that
    /// port first (SO_REUSEADDR). Exits 2 on ICMP port unreachable ("refused").
    public static let dnsLoadScript = #"""
        import json, os, select, socket, struct, sys, time
        server, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
        connected = len(sys.argv) > 4 and sys.argv[4] == "connect"
        use_sendmsg = len(sys.argv) > 4 and sys.argv[4] == "sendmsg"
        s = socket.socket(socket.AF_INET6 if ":" in server else socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        if len(sys.argv) > 5:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("::" if ":" in server else "0.0.0.0", int(sys.argv[5])))
        if connected: s.connect((server, port))
        def query(ident):
            name = b"".join(bytes([len(p)]) + p for p in b"svc.test".split(b".")) + b"\0"
            return struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + name + struct.pack("!HH", 16, 1)
        def send(ident):
            if connected: s.send(query(ident))
            elif use_sendmsg: s.sendmsg([query(ident)], [], 0, (server, port))
            else: s.sendto(query(ident), (server, port))
        def text(answer):
            if struct.unpack("!H", answer[6:8])[0] == 0: return "(no answer, rcode %d)" % (answer[3] & 15)
            # Header, the question (name + 4), the answer's name (a pointer), type, class,
            # TTL, length, then the TXT's length-prefixed string.
            at = 12
            while answer[at] != 0: at += answer[at] + 1
            at += 5 + 2 + 10
            return answer[at + 1:at + 1 + answer[at]].decode()
        waiting, answers, retried, sent, next_id = {}, {}, 0, 0, 0
        deadline = time.time() + 120
        try:
            warm = socket.socket(s.family, socket.SOCK_DGRAM); warm.settimeout(0.5)
            if connected: warm.connect((server, port))
            for attempt in range(6):
                if connected: warm.send(query(65535))
                else: warm.sendto(query(65535), (server, port))
                try: warm.recv(4096); break
                except socket.timeout: pass
            warm.close()
            while (next_id < count or waiting) and time.time() < deadline:
                while next_id < count and len(waiting) < 32:
                    send(next_id); waiting[next_id] = [time.time(), 0]; next_id += 1; sent += 1
                if select.select([s], [], [], 0.2)[0]:
                    data = s.recv(4096)
                    ident = struct.unpack("!H", data[:2])[0]
                    if ident in waiting:
                        del waiting[ident]
                        label = text(data)
                        answers[label] = answers.get(label, 0) + 1
                now = time.time()
                for ident, state in list(waiting.items()):
                    if now - state[0] > 1:
                        if state[1] == 1: del waiting[ident]; answers["(none)"] = answers.get("(none)", 0) + 1
                        else: state[0], state[1] = now, 1; retried += 1; send(ident); sent += 1
        except ConnectionRefusedError:
            print(json.dumps({"refused": True})); sys.exit(2)
        print(json.dumps({"sent": sent, "answers": answers, "retried": retried, "unanswered": len(waiting)}))
        """#

    public struct LoadResult: Decodable, Sendable {
        public var sent: Int
        public var answers: [String: Int]
        public var retried: Int
        public var unanswered: Int
    }

    /// Starts a dnsmasq under `vpm exec` for each of `aids` on `engine` (answering with its
    /// AID), waits until each registered 5353/udp and 5353/tcp and bound its virtual ports
    /// in both families (dnsmasq binds each family apart: with one, the other family's first
    /// queries find no socket), and writes the load script; returns the script's path.
    public static func startDNS(_ engine: EngineRun, aids: [String]) throws -> String {
        for aid in aids {
            _ = try engine.exec(aid, dnsmasq(port: 5353, text: aid, directory: engine.directory), log: "\(aid)-dnsmasq.log")
        }
        var apps: [AppRecord] = []
        try NetworkLab.poll("\(aids.count) dnsmasq copies to register", timeout: 20) {
            apps = ((try? JSONDecoder().decode([AppRecord].self, from: Data(engine.apps(json: true).standardOutput.utf8))) ?? [])
                .filter { $0.initialPort == 5353 }
            return apps.count == 2 * aids.count
        }
        for app in apps {
            try engine.lab.waitForListener(engine.host, port: app.virtualPort, udp: app.transport == "udp", sockets: 2)
        }
        let script = "\(engine.directory)/dns-load.py"
        try dnsLoadScript.write(toFile: script, atomically: true, encoding: .utf8)
        return script
    }

    /// Runs the load script on `host` and decodes what it printed.
    public static func load(_ lab: NetworkLab, _ host: NetworkLab.Host, script: String, server: String, port: UInt16,
                            count: Int) throws -> LoadResult {
        let output = try lab.checked(host, ["python3", script, server, "\(port)", "\(count)"], timeout: 180)
        return try JSONDecoder().decode(LoadResult.self, from: Data(output.standardOutput.utf8))
    }
}
