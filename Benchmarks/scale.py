#!/usr/bin/env python3
"""Clients for make bench-scale (Benchmarks/scale.sh). Each prints one JSON object.

  fill SERVER PORT COUNT RATE ADDRESS...
      COUNT one-way UDP datagrams to SERVER:PORT, each from its own (address, source port):
      COUNT live UDP flows in the engine. Raw socket, paced at RATE datagrams a second.
  connect SERVER PORT SECONDS
      New TCP connections one after another for SECONDS (connect, then close): the rate.
  pingpong SERVER PORT SECONDS OUT
      One TCP connection, one byte each way per round trip, for SECONDS; writes
      "start-time rtt" lines (seconds) to OUT and prints the median and p99.
  serve PORT
      The instance: accepts TCP connections on PORT and echoes what they send, one thread
      (no process per connection, so the client, not the server, bounds the rates).
  stall PINGS START END [DUMPED ERRORS]
      From a pingpong file: the longest round trip that overlapped [START, END] (a dump)
      against the p99 of the others; DUMPED "false" records the dump's error (file ERRORS).
"""
import json
import selectors
import socket
import struct
import sys
import time


def fill(server, port, count, rate, addresses):
    sender = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    destination = socket.inet_aton(server)
    ports = 60000
    started = time.monotonic()
    payload = b"x"
    for index in range(count):
        source = socket.inet_aton(addresses[index // ports])
        sport = 1024 + index % ports
        # UDP checksum 0: none (IPv4); the kernel fills in the IP header's checksum (IP_HDRINCL).
        udp = struct.pack("!HHHH", sport, port, 8 + len(payload), 0) + payload
        header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), index & 0xFFFF, 0x4000, 64, 17, 0, source, destination)
        sender.sendto(header + udp, (server, 0))
        if index % 500 == 499:
            ahead = (index + 1) / rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
    print(json.dumps({"sent": count, "seconds": round(time.monotonic() - started, 2)}))


def connect(server, port, seconds):
    done = failed = 0
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        try:
            with socket.create_connection((server, port), timeout=2) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            done += 1
        except OSError:
            failed += 1
    elapsed = time.monotonic() - started
    print(json.dumps({"connections": done, "failed": failed, "perSecond": round(done / elapsed)}))


def serve(port):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", port))
    listener.listen(4096)
    listener.setblocking(False)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    while True:
        for key, _ in selector.select():
            if key.fileobj is listener:
                try:
                    connection, _ = listener.accept()
                except OSError:
                    continue
                connection.setblocking(False)
                connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                selector.register(connection, selectors.EVENT_READ)
                continue
            connection = key.fileobj
            try:
                data = connection.recv(65536)
                if data:
                    connection.sendall(data)
                    continue
            except OSError:
                pass
            selector.unregister(connection)
            connection.close()


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def pingpong(server, port, seconds, out):
    s = socket.create_connection((server, port), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for _ in range(200):  # warm up: the first round trips are not the steady state
        s.sendall(b"w")
        s.recv(1)
    rtts = []
    with open(out, "w") as lines:
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            begin = time.time()
            tick = time.perf_counter()
            s.sendall(b"p")
            if not s.recv(1):
                break
            rtt = time.perf_counter() - tick
            rtts.append(rtt)
            lines.write(f"{begin:.6f} {rtt:.6f}\n")
    print(json.dumps({"roundTrips": len(rtts), "medianUs": round(percentile(rtts, 0.5) * 1e6, 1),
                      "p99Us": round(percentile(rtts, 0.99) * 1e6, 1)}))


def stall(pings, start, end, dumped="true", errors=None):
    inside, outside = [], []
    failure = None if dumped == "true" else (open(errors).read().strip() if errors else "failed")
    for line in open(pings):
        begin, rtt = (float(field) for field in line.split())
        (inside if begin + rtt >= start and begin <= end else outside).append(rtt)
    print(json.dumps({"dumpSeconds": round(end - start, 3),
                      "longestRoundTripDuringDumpMs": round(max(inside) * 1e3, 2) if inside else None,
                      "p99OtherwiseMs": round(percentile(outside, 0.99) * 1e3, 3) if outside else None,
                      "roundTripsDuringDump": len(inside), "failed": failure}))


if __name__ == "__main__":
    command, arguments = sys.argv[1], sys.argv[2:]
    if command == "fill":
        fill(arguments[0], int(arguments[1]), int(arguments[2]), float(arguments[3]), arguments[4:])
    elif command == "connect":
        connect(arguments[0], int(arguments[1]), float(arguments[2]))
    elif command == "pingpong":
        pingpong(arguments[0], int(arguments[1]), float(arguments[2]), arguments[3])
    elif command == "serve":
        serve(int(arguments[0]))
    elif command == "stall":
        stall(arguments[0], float(arguments[1]), float(arguments[2]), *arguments[3:5])
    else:
        sys.exit(f"unknown command {command}")
