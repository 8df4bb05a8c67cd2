"""The soak's programs (make soak, Benchmarks/soak.sh): an instance, and the clients.

  soak.py server AID PORT          an instance: answers each line "L" with "AID L"; a line
                                   starting with "once " is answered and then the server
                                   closes (so TIME_WAIT stays on its side, not the client's)
  soak.py hold N SECONDS ADDR...   opens N connections to 198.18.0.1:9000 from the ADDRs
                                   in turn, checks each is answered by its AID's instance,
                                   holds them SECONDS, checks them all again, closes; JSON
  soak.py churn RATE SECONDS ADDR... opens RATE connections a second for SECONDS, each one
                                   request and its answer (32 random bytes echoed); JSON
  soak.py flood PPS SECONDS        spoofed SYNs to 198.18.0.1:9000 from random addresses
                                   and ports in 198.18.1.0/24 (acme's network); JSON

An ADDR's AID is its third octet: 198.18.1.x is acme's, 198.18.2.x globex's. A reply from
the other AID's instance is a misroute; a reset or a timeout is a failure. Bounded: every
connection has a 10 s timeout, and the run stops at its SECONDS.
"""
import asyncio, json, os, random, resource, socket, struct, sys, time

SERVER, PORT = "198.18.0.1", 9000
AIDS = {"1": "acme", "2": "globex"}


def aid_of(address):
    return AIDS[address.split(".")[2]]


def raise_limits():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def serve(aid, port):
    async def handle(reader, writer):
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                writer.write(aid.encode() + b" " + line)
                await writer.drain()
                if line.startswith(b"once "):
                    break
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
    server = await asyncio.start_server(handle, "0.0.0.0", port, backlog=65535, reuse_address=True)
    async with server:
        await server.serve_forever()


async def exchange(reader, writer, expected, payload):
    writer.write(payload + b"\n")
    await writer.drain()
    answer = (await asyncio.wait_for(reader.readline(), 10)).rstrip(b"\n")
    name, _, echoed = answer.partition(b" ")
    if name.decode(errors="replace") != expected:
        return "misrouted"
    return "ok" if echoed == payload else "corrupt"


async def connect(source):
    return await asyncio.wait_for(asyncio.open_connection(SERVER, PORT, local_addr=(source, 0)), 10)


def outcome_of(error):
    if isinstance(error, ConnectionResetError):
        return "reset"
    if isinstance(error, (asyncio.TimeoutError, TimeoutError)):
        return "timeout"
    if isinstance(error, ConnectionRefusedError):
        return "refused"
    return "error"


async def hold(count, seconds, addresses):
    connections, counts = [], {}
    opened = time.monotonic()

    async def open_one(index):
        source = addresses[index % len(addresses)]
        try:
            reader, writer = await connect(source)
            result = await exchange(reader, writer, aid_of(source), b"hold %d" % index)
            if result == "ok":
                connections.append((reader, writer, aid_of(source), index))
            return result
        except Exception as error:  # noqa: BLE001 - every failure is counted by kind
            return outcome_of(error)
    semaphore = asyncio.Semaphore(500)

    async def bounded(index):
        async with semaphore:
            return await open_one(index)
    for result in await asyncio.gather(*(bounded(i) for i in range(count))):
        counts[result] = counts.get(result, 0) + 1
    open_seconds = time.monotonic() - opened
    print(json.dumps({"phase": "held", "connections": len(connections)}), flush=True)
    await asyncio.sleep(seconds)
    checks = {}

    async def check(entry):
        reader, writer, aid, index = entry
        try:
            return await exchange(reader, writer, aid, b"again %d" % index)
        except Exception as error:  # noqa: BLE001
            return outcome_of(error)
        finally:
            writer.close()
    for result in await asyncio.gather(*(check(entry) for entry in connections)):
        checks[result] = checks.get(result, 0) + 1
    return {"phase": "hold", "asked": count, "opened": counts, "openSeconds": round(open_seconds, 2),
            "heldSeconds": seconds, "checkedAfter": checks}


async def churn(rate, seconds, addresses):
    counts, latencies = {}, []
    tasks = []
    started = time.monotonic()

    async def one(index):
        source = addresses[index % len(addresses)]
        began = time.monotonic()
        try:
            reader, writer = await connect(source)
            result = await exchange(reader, writer, aid_of(source), b"once " + os.urandom(16).hex().encode())
            writer.close()
        except Exception as error:  # noqa: BLE001
            result = outcome_of(error)
        if result == "ok":
            latencies.append(time.monotonic() - began)
        counts[result] = counts.get(result, 0) + 1
    index = 0
    while time.monotonic() - started < seconds:
        due = int((time.monotonic() - started) * rate)
        while index < due:
            tasks.append(asyncio.ensure_future(one(index)))
            index += 1
        await asyncio.sleep(0.005)
    await asyncio.gather(*tasks)
    latencies.sort()
    pick = lambda q: round(latencies[int(q * (len(latencies) - 1))] * 1000, 2) if latencies else None
    return {"phase": "churn", "rate": rate, "seconds": seconds, "started": index, "outcomes": counts,
            "achievedPerSecond": round(index / seconds, 1), "latencyMs": {"p50": pick(0.5), "p99": pick(0.99)}}


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def flood(pps, seconds):
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    destination = socket.inet_aton(SERVER)
    sent, started = 0, time.monotonic()
    while True:
        elapsed = time.monotonic() - started
        if elapsed >= seconds:
            break
        due = int(elapsed * pps)
        while sent < due:
            source = socket.inet_aton("198.18.1.%d" % random.randint(10, 250))
            port = random.randint(1024, 65535)
            tcp = struct.pack("!HHIIBBHHH", port, PORT, random.getrandbits(32), 0, 5 << 4, 0x02, 8192, 0, 0)
            pseudo = source + destination + struct.pack("!BBH", 0, 6, len(tcp))
            tcp = tcp[:16] + struct.pack("!H", checksum(pseudo + tcp)) + tcp[18:]
            header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), random.getrandbits(16), 0x4000, 64, 6, 0,
                                 source, destination)
            header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
            raw.sendto(header + tcp, (SERVER, 0))
            sent += 1
        time.sleep(0.001)
    return {"phase": "flood", "pps": pps, "seconds": seconds, "sent": sent, "achievedPps": round(sent / seconds)}


def main():
    raise_limits()
    command, arguments = sys.argv[1], sys.argv[2:]
    if command == "server":
        asyncio.run(serve(arguments[0], int(arguments[1])))
    elif command == "hold":
        print(json.dumps(asyncio.run(hold(int(arguments[0]), float(arguments[1]), arguments[2:]))))
    elif command == "churn":
        print(json.dumps(asyncio.run(churn(int(arguments[0]), float(arguments[1]), arguments[2:]))))
    elif command == "flood":
        print(json.dumps(flood(int(arguments[0]), float(arguments[1]))))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
