#!/usr/bin/env python3
"""Standalone test of the vpm preload shim (preload/vpm_preload.c).

    python3 preload/test_preload.py BUILD/libvpm-preload.so

Runs a fake vpm engine on a Unix socket in a temporary directory, then small python3
child programs under LD_PRELOAD (python's socket module calls libc's bind, getsockname
and connect, so the shim sees them; ctypes calls reach the shim too). Loopback only;
no root needed. Prints one line per test and "N passed, M failed"; exits 0 or 1.
"""
import json
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import traceback

LIBRARY = None
PYTHON = sys.executable or "python3"

# ----------------------------------------------------------------------------------------
# Ports: the multiplexed initial ports must be free on this host (the shim must never bind
# them); virtual ports are asked from the kernel, so they are free too.


def port_free(port, kind, family=socket.AF_INET, host="127.0.0.1"):
    s = socket.socket(family, kind)
    try:
        s.bind((host, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def free_port(kind):
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def pick_port(preferred):
    """preferred if free for tcp and udp, else a kernel-chosen one free for both."""
    for candidate in [preferred] + [None] * 50:
        port = candidate or free_port(socket.SOCK_STREAM)
        if all(port_free(port, k) for k in (socket.SOCK_STREAM, socket.SOCK_DGRAM)):
            return port
    raise RuntimeError("no free port")


def ipv6_available():
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.bind(("::1", 0))
        s.close()
        return True
    except OSError:
        return False


def listening_ports(kind="tcp"):
    """Local ports in LISTEN (tcp) or bound (udp), from /proc/net."""
    ports = set()
    for name in (kind, kind + "6"):
        try:
            with open("/proc/net/" + name) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    local, state = fields[1], fields[3]
                    if kind == "udp" or state == "0A":
                        ports.add(int(local.rsplit(":", 1)[1], 16))
        except FileNotFoundError:
            pass
    return ports


# ----------------------------------------------------------------------------------------
# The fake engine


class FakeEngine:
    """Answers bind requests by AID; records every request (parsed) in self.requests."""

    def __init__(self, path):
        self.path = path
        self.requests = []
        self.raw = []
        self.virtual_ports = []   # every virtualPort answered, in order
        self.lock = threading.Lock()
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(path)
        self.server.listen(64)
        self.stopping = False
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def stop(self):
        self.stopping = True
        try:
            self.server.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.server.close()

    def take(self):
        with self.lock:
            requests, self.requests = self.requests, []
            return requests

    def last_virtual_port(self):
        with self.lock:
            return self.virtual_ports[-1]

    def serve(self):
        while not self.stopping:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self.answer, args=(conn,), daemon=True).start()

    def answer(self, conn):
        with conn:
            data = b""
            while not data.endswith(b"\n"):
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
            with self.lock:
                self.raw.append(data)
            try:
                request = json.loads(data)
            except ValueError:
                conn.sendall(b'{"error":"bad request"}\n')
                return
            with self.lock:
                self.requests.append(request)
            reply = self.reply(request)
            if reply is None:           # "silent": never answer, hold the connection
                time.sleep(7)
                return
            conn.sendall(reply)

    def reply(self, request):
        aid = request.get("aid")
        if request.get("command") == "connect":
            if aid == "refused":
                return b'{"error":"no such AID"}\n'
            return b"{}\n"
        if request.get("command") != "bind":
            return b'{"error":"unknown command"}\n'
        kind = socket.SOCK_DGRAM if request.get("transport") == "udp" else socket.SOCK_STREAM
        if aid == "full":
            return b'{"error":"virtual port range exhausted","errorCode":"EADDRINUSE"}\n'
        if aid == "denied":
            return b'{"errorCode":"EACCES","error":"AID denied may not use this port"}\n'
        if aid == "quoted":
            return b'{"error":"port \\"9000\\" is\\nreserved \\/ see \\u00e9t\\u00e9","errorCode":"ESOMETHING"}\n'
        if aid == "garbage":
            return b"hello there\n"
        if aid == "silent":
            return None
        port = free_port(kind)
        with self.lock:
            self.virtual_ports.append(port)
        if aid == "spaced":
            # other keys first, a decoy "virtualPort" inside a string, spaces, no newline
            return ('{ "note" : "\\"virtualPort\\":1", "nested": {"virtualPort": 2, "a": [1, {"b": "}"}]},'
                    '  "virtualPort" : %d , "ok": true }' % port).encode()
        return b'{"virtualPort":%d,"aid":"%s"}\n' % (port, aid.encode())


# ----------------------------------------------------------------------------------------
# Running child programs under the shim

PRELUDE = textwrap.dedent("""
    import ctypes, errno, json, os, socket, sys, threading
    def out(**values):
        print(json.dumps(values), flush=True)
    def err_name(e):
        return errno.errorcode.get(e.errno, str(e.errno))
""")


def child_env(aid="acme", sock=None, ports=None, debug=False, preload=True, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("VPM_") and k != "LD_PRELOAD"}
    if preload:
        env["LD_PRELOAD"] = LIBRARY
    if aid is not None:
        env["VPM_AID"] = aid
    if sock is not None:
        env["VPM_SOCKET"] = sock
    if ports is not None:
        env["VPM_PORTS"] = ports
    if debug:
        env["VPM_DEBUG"] = "1"
    env.update(extra)
    return env


def run_child(code, env, timeout=20):
    proc = subprocess.run([PYTHON, "-c", PRELUDE + textwrap.dedent(code)], env=env, capture_output=True,
                          text=True, timeout=timeout)
    lines = [json.loads(l) for l in proc.stdout.splitlines() if l.startswith("{")]
    return proc, lines


def start_child(code, env):
    return subprocess.Popen([PYTHON, "-c", PRELUDE + textwrap.dedent(code)], env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def read_json(proc):
    line = proc.stdout.readline()
    if not line:
        raise AssertionError("child said nothing; stderr: " + proc.stderr.read())
    return json.loads(line)


# ----------------------------------------------------------------------------------------
# Tests

results = {"passed": 0, "failed": 0}
TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def equal(actual, expected, what):
    if actual != expected:
        raise AssertionError("%s: expected %r, got %r" % (what, expected, actual))


class Context:
    pass


@test
def tcp_listener_bound_to_virtual_port(c):
    proc = start_child("""
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", %d))
        s.listen(5)
        out(name=s.getsockname())
        conn, peer = s.accept()
        out(accepted=conn.getsockname(), data=conn.recv(100).decode())
        conn.sendall(b"pong")
        conn.close()
    """ % c.tcp_port, child_env(sock=c.sock, ports=c.ports))
    try:
        first = read_json(proc)
        equal(first["name"], ["127.0.0.1", c.tcp_port], "getsockname of the listener")
        requests = c.engine.take()
        equal(len(requests), 1, "bind requests")
        r = requests[0]
        equal({k: r[k] for k in ("command", "aid", "initialPort", "transport")},
              {"command": "bind", "aid": "acme", "initialPort": c.tcp_port, "transport": "tcp"}, "request")
        listening = listening_ports("tcp")
        check(c.tcp_port not in listening, "the initial port %d must not be bound" % c.tcp_port)
        # the virtual port: the one listening port the child owns; find it by connecting
        raw = c.engine.raw[-1]
        check(raw.endswith(b"}\n") and raw.count(b"\n") == 1, "request is one line: %r" % raw)
        virtual = c.engine.last_virtual_port()
        check(virtual in listening, "virtual port %d is not listening" % virtual)
        client = socket.create_connection(("127.0.0.1", virtual), timeout=5)
        client.sendall(b"ping")
        equal(client.recv(100), b"pong", "answer through the virtual port")
        client.close()
        second = read_json(proc)
        equal(second["accepted"], ["127.0.0.1", c.tcp_port], "getsockname of the accepted socket")
        equal(second["data"], "ping", "data")
        proc.wait(10)
        equal(proc.returncode, 0, "child exit status")
        equal(proc.stderr.read(), "", "stderr")
    finally:
        proc.kill()
        proc.wait()


@test
def virtual_port_is_what_the_engine_said(c):
    proc, lines = run_child("""
        import ctypes
        s = socket.socket()
        s.bind(("127.0.0.1", %d))
        s.listen(1)
        out(name=s.getsockname(), fd=s.fileno())
        ports = set()
        for line in open("/proc/net/tcp").readlines()[1:]:
            f = line.split()
            if f[3] == "0A":
                ports.add(int(f[1].rsplit(":", 1)[1], 16))
        out(listening=sorted(ports))
    """ % c.tcp_port, child_env(sock=c.sock, ports=c.ports))
    equal(proc.returncode, 0, "exit status (stderr: %s)" % proc.stderr)
    requests = c.engine.take()
    equal(len(requests), 1, "bind requests")
    # the fake answered with a free port it chose: that one listens, the initial one does not
    check(c.engine.last_virtual_port() in lines[1]["listening"], "virtual port is not listening")
    check(c.tcp_port not in lines[1]["listening"], "initial port is listening")
    equal(lines[0]["name"][1], c.tcp_port, "getsockname")


@test
def getsockname_after_fork_and_threads(c):
    proc, lines = run_child("""
        socks = []
        names = []
        def work():
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            s.bind(("127.0.0.1", %d))
            names.append(s.getsockname()[1])
            socks.append(s)
        threads = [threading.Thread(target=work) for _ in range(8)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        out(names=names)
        s = socks[0]
        s.listen(1)
        pid = os.fork()
        if pid == 0:
            out(child=s.getsockname()[1])
            os._exit(0)
        os.waitpid(pid, 0)
    """ % c.tcp_port, child_env(sock=c.sock, ports=c.ports))
    equal(proc.returncode, 0, "exit status (stderr: %s)" % proc.stderr)
    equal(lines[0]["names"], [c.tcp_port] * 8, "getsockname in 8 threads")
    equal(lines[1]["child"], c.tcp_port, "getsockname in a forked child")
    equal(len(c.engine.take()), 8, "bind requests")


@test
def exec_child_asks_again(c):
    proc, lines = run_child("""
        import subprocess
        r = subprocess.run([sys.executable, "-c",
            "import socket; s = socket.socket(); s.bind(('127.0.0.1', %d)); print(s.getsockname()[1])"],
            capture_output=True, text=True)
        out(port=int(r.stdout), stderr=r.stderr)
    """ % c.tcp_port, child_env(sock=c.sock, ports=c.ports))
    equal(proc.returncode, 0, "exit status (stderr: %s)" % proc.stderr)
    equal(lines[0]["port"], c.tcp_port, "getsockname in the exec'd grandchild")
    equal(len(c.engine.take()), 1, "bind requests")


@test
def non_multiplexed_port_untouched(c):
    other = pick_port(8080)
    proc, lines = run_child("""
        s = socket.socket()
        s.bind(("127.0.0.1", %d))
        s.listen(1)
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("127.0.0.1", 0))
        t = socket.socket()
        t.bind(("127.0.0.1", 0))
        out(name=s.getsockname(), zero=[u.getsockname()[1] != 0, t.getsockname()[1] != 0])
    """ % other, child_env(sock=c.sock, ports=c.ports))
    equal(proc.returncode, 0, "exit status (stderr: %s)" % proc.stderr)
    equal(lines[0]["name"], ["127.0.0.1", other], "getsockname")
    equal(lines[0]["zero"], [True, True], "port 0 binds")
    equal(c.engine.take(), [], "engine requests")
    equal(proc.stderr, "", "stderr")


@test
def udp_listed_port(c):
    proc = start_child("""
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("127.0.0.1", %d))
        out(name=u.getsockname())
        data, peer = u.recvfrom(100)
        out(data=data.decode())
    """ % c.udp_port, child_env(sock=c.sock, ports=c.ports))
    try:
        first = read_json(proc)
        equal(first["name"], ["127.0.0.1", c.udp_port], "getsockname")
        requests = c.engine.take()
        equal([(r["initialPort"], r["transport"]) for r in requests], [(c.udp_port, "udp")], "requests")
        bound = listening_ports("udp")
        check(c.udp_port not in bound, "the initial udp port must not be bound")
        virtual = c.engine.last_virtual_port()
        check(virtual in bound, "virtual udp port %d is not bound" % virtual)
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sender.sendto(b"hi", ("127.0.0.1", virtual))
        sender.close()
        second = read_json(proc)
        equal(second["data"], "hi", "datagram through the virtual port")
        proc.wait(10)
    finally:
        proc.kill()
        proc.wait()


@test
def transport_must_match(c):
    # the tcp port over udp, and the udp port over tcp: both untouched
    proc, lines = run_child("""
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("127.0.0.1", %d))
        t = socket.socket()
        t.bind(("127.0.0.1", %d))
        out(udp=u.getsockname()[1], tcp=t.getsockname()[1])
    """ % (c.tcp_port, c.udp_port), child_env(sock=c.sock, ports=c.ports))
    equal(proc.returncode, 0, "exit status (stderr: %s)" % proc.stderr)
    equal(lines[0], {"udp": c.tcp_port, "tcp": c.udp_port}, "ports")
    equal(c.engine.take(), [], "engine requests")


@test
def ipv6_loopback_wildcard_and_mapped(c):
    if not c.ipv6:
        return "skipped: no IPv6 loopback"
    proc, lines = run_child("""
        names = []
        for host in ("::1", "::", "::ffff:127.0.0.1"):
            s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            s.bind((host, %d))
            s.listen(1)
            names.append(list(s.getsockname()[:2]))
            s.close()
        w = socket.socket()
        w.bind(("0.0.0.0", %d))
        names.append(list(w.getsockname()))
        out(names=names)
    """ % (c.tcp_port, c.tcp_port), child_env(sock=c.sock, ports=c.ports))
    equal(proc.returncode, 0, "exit status (stderr: %s)" % proc.stderr)
    equal(lines[0]["names"], [["::1", c.tcp_port], ["::", c.tcp_port], ["::ffff:127.0.0.1", c.tcp_port],
                              ["0.0.0.0", c.tcp_port]], "getsockname")
    equal(len(c.engine.take()), 4, "bind requests")


@test
def engine_refuses_eaddrinuse(c):
    proc, lines = run_child("""
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", %d))
            out(result="bound", name=s.getsockname())
        except OSError as e:
            out(result=err_name(e), name=s.getsockname())
    """ % c.tcp_port, child_env(aid="full", sock=c.sock, ports=c.ports))
    equal(proc.returncode, 0, "exit status")
    equal(lines[0]["result"], "EADDRINUSE", "errno")
    equal(lines[0]["name"][1], 0, "the socket stays unbound")
    equal(proc.stderr, "vpm: cannot bind port %d/tcp for AID full: virtual port range exhausted "
          "(control socket %s)\n" % (c.tcp_port, c.sock), "stderr")
    c.engine.take()


@test
def engine_error_code_and_escapes(c):
    proc, lines = run_child("""
        for _ in range(1):
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", %d))
                out(result="bound")
            except OSError as e:
                out(result=err_name(e))
    """ % c.tcp_port, child_env(aid="quoted", sock=c.sock, ports=c.ports))
    equal(lines[0]["result"], "EADDRNOTAVAIL", "errno for an unknown errorCode")
    equal(proc.stderr, "vpm: cannot bind port %d/tcp for AID quoted: port \"9000\" is reserved / see \u00e9t\u00e9 "
          "(control socket %s)\n" % (c.tcp_port, c.sock), "stderr")
    proc, lines = run_child("""
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", %d))
            out(result="bound")
        except OSError as e:
            out(result=err_name(e))
    """ % c.tcp_port, child_env(aid="denied", sock=c.sock, ports=c.ports))
    equal(lines[0]["result"], "EACCES", "errno for errorCode EACCES")
    c.engine.take()


@test
def engine_answer_with_other_keys_and_spaces(c):
    proc, lines = run_child("""
        s = socket.socket()
        s.bind(("127.0.0.1", %d))
        s.listen(1)
        out(name=s.getsockname()[1])
    """ % c.tcp_port, child_env(aid="spaced", sock=c.sock, ports=c.ports))
    equal(proc.returncode, 0, "exit status (stderr: %s)" % proc.stderr)
    equal(lines[0]["name"], c.tcp_port, "getsockname")
    equal(proc.stderr, "", "stderr")
    c.engine.take()


@test
def engine_answer_unreadable(c):
    proc, lines = run_child("""
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", %d))
            out(result="bound")
        except OSError as e:
            out(result=err_name(e))
    """ % c.tcp_port, child_env(aid="garbage", sock=c.sock, ports=c.ports))
    equal(lines[0]["result"], "EADDRNOTAVAIL", "errno")
    equal(proc.stderr, "vpm: cannot bind port %d/tcp for AID garbage: the vpm engine at %s sent an answer "
          "this library cannot read: hello there\n" % (c.tcp_port, c.sock), "stderr")
    c.engine.take()


@test
def no_engine(c):
    missing = os.path.join(c.dir, "nobody.sock")
    proc, lines = run_child("""
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", %d))
            out(result="bound")
        except OSError as e:
            out(result=err_name(e), name=s.getsockname()[1])
        fds = len(os.listdir("/proc/self/fd"))
        for _ in range(20):
            try:
                socket.socket().bind(("127.0.0.1", %d))
            except OSError:
                pass
        out(leaked=len(os.listdir("/proc/self/fd")) - fds)
    """ % (c.tcp_port, c.tcp_port), child_env(sock=missing, ports=c.ports))
    equal(lines[0]["result"], "EADDRNOTAVAIL", "errno")
    equal(lines[0]["name"], 0, "the socket stays unbound")
    equal(lines[1]["leaked"], 0, "file descriptors left open")
    first = proc.stderr.splitlines()[0]
    equal(first, "vpm: cannot bind port %d/tcp for AID acme: the vpm engine does not answer at %s "
          "(is `vpm run` running?)" % (c.tcp_port, missing), "stderr")
    equal(len(proc.stderr.splitlines()), 21, "one stderr line per failed bind")


@test
def silent_engine_times_out(c):
    started = time.monotonic()
    proc, lines = run_child("""
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", %d))
            out(result="bound")
        except OSError as e:
            out(result=err_name(e))
    """ % c.tcp_port, child_env(aid="silent", sock=c.sock, ports=c.ports))
    elapsed = time.monotonic() - started
    equal(lines[0]["result"], "EADDRNOTAVAIL", "errno")
    check(4.5 <= elapsed < 9, "timed out after %.1f s, expected about 5" % elapsed)
    check("does not answer at %s" % c.sock in proc.stderr, "stderr: %r" % proc.stderr)
    c.engine.take()


@test
def vpm_timeout(c):
    code = """
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", %d))
            out(result="bound")
        except OSError as e:
            out(result=err_name(e))
    """ % c.tcp_port
    started = time.monotonic()
    proc, lines = run_child(code, child_env(aid="silent", sock=c.sock, ports=c.ports, VPM_TIMEOUT="2"))
    elapsed = time.monotonic() - started
    equal(lines[0]["result"], "EADDRNOTAVAIL", "errno")
    check(1.5 <= elapsed < 4.5, "VPM_TIMEOUT=2 timed out after %.1f s" % elapsed)
    proc, lines = run_child(code, child_env(aid="acme", sock=c.sock, ports=c.ports, VPM_TIMEOUT="soon"))
    equal(lines[0]["result"], "bound", "bind with a bad VPM_TIMEOUT")
    equal(proc.stderr, "vpm: VPM_TIMEOUT is not a number of seconds from 1 to 86400, using 5: soon\n", "stderr")
    c.engine.take()


@test
def already_bound_socket(c):
    proc, lines = run_child("""
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        try:
            s.bind(("127.0.0.1", %d))
            out(result="bound")
        except OSError as e:
            out(result=err_name(e))
    """ % c.tcp_port, child_env(sock=c.sock, ports=c.ports))
    equal(lines[0]["result"], "EINVAL", "errno")
    equal(c.engine.take(), [], "engine requests")


@test
def errno_preserved_and_af_unspec(c):
    # ctypes calls libc's bind through the global symbol table: the shim answers
    proc, lines = run_child("""
        import struct
        libc = ctypes.CDLL(None, use_errno=True)
        s = socket.socket()
        def sockaddr(family, port):
            return struct.pack("=H", family) + struct.pack("!H", port) + bytes(12)
        addr = sockaddr(socket.AF_INET, %d)
        ctypes.set_errno(1234)
        rc = libc.bind(s.fileno(), addr, len(addr))
        e1 = ctypes.get_errno()
        # AF_UNSPEC + INADDR_ANY on an AF_INET socket: the kernel binds it like AF_INET
        u = socket.socket()
        addr = sockaddr(socket.AF_UNSPEC, %d)
        ctypes.set_errno(4321)
        rc2 = libc.bind(u.fileno(), addr, len(addr))
        e2 = ctypes.get_errno()
        ctypes.set_errno(77)
        buf = ctypes.create_string_buffer(128)
        n = ctypes.c_uint(128)
        rc3 = libc.getsockname(u.fileno(), buf, ctypes.byref(n))
        e3 = ctypes.get_errno()
        out(rc=[rc, rc2, rc3], errno=[e1, e2, e3], names=[s.getsockname()[1], u.getsockname()[1]],
            raw=struct.unpack("!H", buf.raw[2:4])[0])
    """ % (c.tcp_port, c.tcp_port), child_env(sock=c.sock, ports=c.ports))
    equal(proc.returncode, 0, "exit status (stderr: %s)" % proc.stderr)
    equal(lines[0]["rc"], [0, 0, 0], "return values")
    equal(lines[0]["errno"], [1234, 4321, 77], "errno after success")
    equal(lines[0]["names"], [c.tcp_port, c.tcp_port], "getsockname")
    equal(lines[0]["raw"], c.tcp_port, "getsockname through ctypes")
    equal(len(c.engine.take()), 2, "bind requests")


@test
def connect_registers(c):
    listener = socket.socket()
    listener.bind(("127.0.0.1", c.tcp_port))     # this test process is not preloaded
    listener.listen(16)
    try:
        proc, lines = run_child("""
            s = socket.socket()
            s.connect(("127.0.0.1", %d))
            out(local=s.getsockname())
            # pre-bound to a specific address and port 0
            p = socket.socket()
            p.bind(("127.0.0.1", 0))
            p.connect(("127.0.0.1", %d))
            out(local=p.getsockname())
            # nonblocking: EINPROGRESS passes through; polling connect() again registers nothing
            n = socket.socket()
            n.setblocking(False)
            out(first=errno.errorcode.get(n.connect_ex(("127.0.0.1", %d)), "0"))
            import select
            select.select([], [n], [], 5)
            out(second=errno.errorcode.get(n.connect_ex(("127.0.0.1", %d)), "0"), local=n.getsockname())
            # a port not multiplexed: nothing
            q = socket.socket()
            try:
                q.connect(("127.0.0.1", 1))
            except OSError as e:
                out(refused=err_name(e))
        """ % ((c.tcp_port,) * 4), child_env(sock=c.sock, ports=c.ports))
        equal(proc.returncode, 0, "exit status (stderr: %s)" % proc.stderr)
        equal(proc.stderr, "", "stderr")
        requests = c.engine.take()
        equal(len(requests), 3, "connect registrations")
        for r, line in zip(requests, [lines[0], lines[1], lines[3]]):
            expected = {"command": "connect", "aid": "acme", "transport": "tcp", "localAddress": "127.0.0.1",
                        "localPort": line["local"][1], "remoteAddress": "127.0.0.1", "remotePort": c.tcp_port}
            equal(r, expected, "registration")
        equal(lines[2]["first"], "EINPROGRESS", "nonblocking connect")
        check(lines[3]["second"] in ("0", "EISCONN"), "second connect_ex: %r" % lines[3]["second"])
        equal(lines[4]["refused"], "ECONNREFUSED", "connect to port 1")
        # the peers the listener sees are the registered ports
        peers = sorted(listener.accept()[0].getpeername()[1] for _ in range(3))
        equal(peers, sorted(r["localPort"] for r in requests), "ports the server saw")
    finally:
        listener.close()


@test
def connect_udp_and_ipv6(c):
    proc, lines = run_child("""
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.connect(("127.0.0.1", %d))
        out(local=u.getsockname())
        if %r:
            s6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            s6.connect(("::1", %d))
            out(local=s6.getsockname()[:2])
            m = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            m.connect(("::ffff:127.0.0.1", %d))
            out(local=m.getsockname()[:2])
    """ % (c.udp_port, c.ipv6, c.udp_port, c.udp_port), child_env(sock=c.sock, ports=c.ports))
    equal(proc.returncode, 0, "exit status (stderr: %s)" % proc.stderr)
    requests = c.engine.take()
    expected = [("127.0.0.1", "127.0.0.1")]
    if c.ipv6:
        expected += [("::1", "::1"), ("::ffff:127.0.0.1", "::ffff:127.0.0.1")]
    equal([(r["localAddress"], r["remoteAddress"]) for r in requests], expected, "addresses")
    equal([r["localPort"] for r in requests], [l["local"][1] for l in lines], "local ports")
    equal({r["transport"] for r in requests}, {"udp"}, "transport")


@test
def connect_without_engine_still_connects(c):
    listener = socket.socket()
    listener.bind(("127.0.0.1", c.tcp_port))
    listener.listen(4)
    missing = os.path.join(c.dir, "nobody.sock")
    try:
        for aid, sock, reason in [("acme", missing, "the vpm engine does not answer at %s (is `vpm run` running?)" % missing),
                                  ("refused", c.sock, "no such AID (control socket %s)" % c.sock)]:
            proc, lines = run_child("""
                s = socket.socket()
                s.connect(("127.0.0.1", %d))
                out(ok=True, peer=s.getpeername()[1])
            """ % c.tcp_port, child_env(aid=aid, sock=sock, ports=c.ports))
            equal(proc.returncode, 0, "exit status (stderr: %s)" % proc.stderr)
            equal(lines[0]["peer"], c.tcp_port, "connected")
            equal(proc.stderr, "vpm: cannot register the connection to 127.0.0.1:%d/tcp for AID %s (connecting "
                  "anyway): %s\n" % (c.tcp_port, aid, reason), "stderr")
            listener.accept()[0].close()
        c.engine.take()
    finally:
        listener.close()


@test
def without_vpm_aid_nothing_happens(c):
    for env in (child_env(aid=None, sock=c.sock, ports=c.ports), child_env(aid="", sock=c.sock, ports=c.ports),
                child_env(sock=c.sock, ports=""), child_env(sock=c.sock, ports=None)):
        proc, lines = run_child("""
            s = socket.socket()
            s.bind(("127.0.0.1", %d))
            s.listen(1)
            out(name=s.getsockname()[1])
            t = socket.socket()
            t.connect(("127.0.0.1", %d))
        """ % (c.tcp_port, c.tcp_port), env)
        equal(proc.returncode, 0, "exit status (stderr: %s)" % proc.stderr)
        equal(lines[0]["name"], c.tcp_port, "getsockname")
        equal(proc.stderr, "", "stderr")
    equal(c.engine.take(), [], "engine requests")


@test
def really_bound_initial_port_without_vpm(c):
    # sanity check that the test can see a real bind of the initial port when not preloaded
    proc = start_child("""
        s = socket.socket()
        s.bind(("127.0.0.1", %d))
        s.listen(1)
        out(ready=True)
        sys.stdin.readline()
    """ % c.tcp_port, child_env(aid=None, preload=False))
    try:
        read_json(proc)
        check(c.tcp_port in listening_ports("tcp"), "plain bind of the initial port is visible")
    finally:
        proc.kill()
        proc.wait()


@test
def bad_vpm_ports_entries(c):
    proc, lines = run_child("""
        s = socket.socket()
        s.bind(("127.0.0.1", %d))
        out(name=s.getsockname()[1])
    """ % c.tcp_port, child_env(sock=c.sock, ports="nonsense, %d/tcp ,70000/udp,5/sctp" % c.tcp_port))
    equal(proc.returncode, 0, "exit status (stderr: %s)" % proc.stderr)
    equal(lines[0]["name"], c.tcp_port, "getsockname")
    equal(len(proc.stderr.splitlines()), 3, "one warning per bad entry: %r" % proc.stderr)
    equal(len(c.engine.take()), 1, "bind requests")


@test
def debug_lines(c):
    listener = socket.socket()
    listener.bind(("127.0.0.1", c.tcp_port))
    listener.listen(4)
    try:
        proc, lines = run_child("""
            s = socket.socket()
            s.bind(("127.0.0.1", %d))
            s.getsockname()
            t = socket.socket()
            t.connect(("127.0.0.1", %d))
        """ % (c.tcp_port, c.tcp_port), child_env(sock=c.sock, ports=c.ports, debug=True))
        equal(proc.returncode, 0, "exit status (stderr: %s)" % proc.stderr)
        # python's socket finalizer may call getsockname() again (repr for a ResourceWarning)
        got = proc.stderr.splitlines()
        check(len(got) >= 4, "debug lines: %r" % got)
        check(all(l.startswith("vpm: debug: ") for l in got), "prefix: %r" % got)
        check(" -> virtual port " in got[1] and " registered 127.0.0.1:" in got[3], "content: %r" % got)
        c.engine.take()
    finally:
        listener.close()


def main():
    global LIBRARY
    if len(sys.argv) != 2:
        print("usage: python3 preload/test_preload.py PATH/TO/libvpm-preload.so", file=sys.stderr)
        return 2
    LIBRARY = os.path.abspath(sys.argv[1])
    if not os.path.exists(LIBRARY):
        print("no such library: " + LIBRARY, file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="vpm-preload-test-") as directory:
        c = Context()
        c.dir = directory
        c.sock = os.path.join(directory, "vpm.sock")
        c.engine = FakeEngine(c.sock)
        c.tcp_port = pick_port(9000)
        c.udp_port = pick_port(5353)
        while c.udp_port == c.tcp_port:
            c.udp_port = pick_port(0)
        c.ports = "%d/tcp,%d/udp" % (c.tcp_port, c.udp_port)
        c.ipv6 = ipv6_available()
        print("library %s; multiplexed ports %s; fake engine at %s" % (LIBRARY, c.ports, c.sock))
        for fn in TESTS:
            c.engine.take()
            try:
                note = fn(c)
                results["passed"] += 1
                print("ok    %s%s" % (fn.__name__, " (%s)" % note if note else ""))
            except Exception as e:
                results["failed"] += 1
                print("FAIL  %s: %s" % (fn.__name__, e))
                if not isinstance(e, AssertionError):
                    traceback.print_exc()
        c.engine.stop()
    print("%d passed, %d failed" % (results["passed"], results["failed"]))
    return 0 if results["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
