#!/usr/bin/env bash
# make bench-cooperative: how long a cooperative connection takes to set up.
#
# Two throwaway namespaces joined by a veth pair, each running `vpm run` in cooperative mode
# (198.18.0.1 the server host, 198.18.0.2 the client host, one HMAC key). On the server an
# acme instance (`vpm exec --aid acme`, Python) accepts, sends one byte and closes; on the
# client an acme program (`vpm exec --aid acme`, Python) connects COUNT times in sequence to
# 198.18.0.1:9000 and times each connect(): the client engine holds the SYN, negotiates the
# virtual port with the server engine, then releases it. Each connection is checked (one
# byte back); the figures are the median, p90 and p99 of connect(), beside the same loop
# against the same instance on port 9000 with no engine at all ("direct").
#
# Also the same two hosts as a fleet on etcd (one etcd member on the server host, kernel
# datapath, docs/fleet.md): "fleet" dials the server's address (the engines' key derived
# from the directory), "service" dials the service address 198.18.0.100, which the client's
# engine sends to the server, the one host with an acme instance.
#
# Knobs: VPM_BINARY (else a release build), VPM_BENCH_DATAPATHS ("kernel userspace"),
# VPM_BENCH_COUNT (400 connections per datapath), VPM_BENCH_FLEET (1; 0 skips the fleet).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "bench-cooperative: needs root (namespaces, NFQUEUE); run: sudo make bench-cooperative" >&2; exit 1; }
count=${VPM_BENCH_COUNT:-400}
read -r -a datapaths <<<"${VPM_BENCH_DATAPATHS:-kernel userspace}"
scripts/install-deps.sh
if [ -z "${VPM_BINARY:-}" ]; then
  swift build -c release --product vpm
  VPM_BINARY="$(swift build -c release --show-bin-path)/vpm"
fi

prefix=vpmcb-$$
server=$prefix-s
client=$prefix-c
work=$(mktemp -d /tmp/vpm-coop-bench.XXXXXX)
source Benchmarks/namespaces.sh
stop_hosts() { stop_namespaces "$server" "$client"; }
trap 'stop_hosts; rm -rf "$work"' EXIT

umask 077  # the configurations hold a key: vpm run refuses files other users can read
key=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
cat >"$work/server.yaml" <<EOY
virtual-ports: 20000-20999
ports: [9000]
applications: {acme: {}}
cooperative:
  listen: 9901
  peers:
    - {network: 198.18.0.2, key: $key}
EOY
cat >"$work/client.yaml" <<EOY
virtual-ports: 21000-21999
ports: [9000]
applications: {acme: {}}
cooperative:
  peers:
    - {network: 198.18.0.1, key: $key, virtual-ports: 20000-20999}
EOY
cat >"$work/instance.py" <<'EOY'
import socket
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("0.0.0.0", 9000))
listener.listen(512)
while True:
    connection, _ = listener.accept()
    connection.sendall(b"x")
    connection.close()
EOY
cat >"$work/connect.py" <<'EOY'
import socket, statistics, sys, time
label, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
address = sys.argv[4] if len(sys.argv) > 4 else "198.18.0.1"
times = []
for _ in range(count):
    s = socket.socket()
    started = time.perf_counter()
    s.connect((address, port))
    times.append((time.perf_counter() - started) * 1e6)
    if s.recv(1) != b"x":
        sys.exit(f"{label}: connection without the instance's byte")
    s.close()
times.sort()
print(f"{label:<10} {count:>6}  {statistics.median(times):>8.0f}  {times[int(count * 0.9)]:>8.0f}  {times[int(count * 0.99)]:>8.0f}")
EOY

# fleet_configuration NAME VIRTUAL-PORTS: an engine of the fleet (no key in the file).
fleet_configuration() {
  cat <<EOY
virtual-ports: $2
ports: [9000]
applications: {acme: {}}
fleet:
  etcd: http://198.18.0.1:2379
  name: $1
  network: 198.18.0.0/24
  virtual-ports: 20000-21999
  key-file: $work/$1.key
  service: 198.18.0.100
EOY
}
fleet_configuration server 20000-20999 >"$work/fleet-server.yaml"
fleet_configuration client 21000-21999 >"$work/fleet-client.yaml"

make_hosts() {
  ip netns add "$server"; ip netns add "$client"
  ip link add "$prefix-a" netns "$server" type veth peer name "$prefix-b" netns "$client"
  ip -n "$server" addr add 198.18.0.1/24 dev "$prefix-a"; ip -n "$client" addr add 198.18.0.2/24 dev "$prefix-b"
  for ns in "$server" "$client"; do ip -n "$ns" link set lo up; done
  ip -n "$server" link set "$prefix-a" up; ip -n "$client" link set "$prefix-b" up
}
wait_listening() { # port
  for _ in $(seq 100); do ip netns exec "$server" ss -Htln "sport = :$1" | grep -q . && return 0; sleep 0.1; done
  echo "bench-cooperative: nothing listens on $1 in the server host" >&2; return 1
}

echo "connect() time, microseconds ($VPM_BINARY)"
echo "path        count    median       p90       p99"
make_hosts
ip netns exec "$server" python3 "$work/instance.py" >"$work/instance-direct.log" 2>&1 &
wait_listening 9000
ip netns exec "$client" python3 "$work/connect.py" direct 9000 "$count"
stop_hosts
# run_pass LABEL DATAPATH CONFIGURATION-PREFIX ADDRESS: both engines, the instance, the timed loop.
run_pass() {
  local label=$1 datapath=$2 config=$3 address=$4
  for side in server client; do
    ns=$server; [ $side = client ] && ns=$client
    ip netns exec "$ns" "$VPM_BINARY" run --config "$work/$config$side.yaml" --socket "$work/$side.sock" \
      --datapath "$datapath" >"$work/$side-$label.log" 2>&1 &
  done
  for side in server client; do
    for _ in $(seq 100); do grep -q "engine running" "$work/$side-$label.log" && break; sleep 0.1; done
    grep -q "datapath=$datapath" "$work/$side-$label.log" || { cat "$work/$side-$label.log" >&2; exit 1; }
  done
  ip netns exec "$server" "$VPM_BINARY" exec --aid acme --config "$work/${config}server.yaml" --socket "$work/server.sock" -- \
    python3 "$work/instance.py" >"$work/instance-$label.log" 2>&1 &
  virtual=""
  for _ in $(seq 100); do
    virtual=$("$VPM_BINARY" apps --socket "$work/server.sock" --json 2>/dev/null | python3 -c \
      'import json,sys; print(next((a["virtualPort"] for a in json.load(sys.stdin) if a["aid"] == "acme"), ""))' \
      2>/dev/null || true)
    [ -n "$virtual" ] && break
    sleep 0.1
  done
  [ -n "$virtual" ] || { echo "bench-cooperative: the acme instance never registered" >&2; exit 1; }
  wait_listening "$virtual"
  if [ "$config" = fleet- ]; then
    # The client's engine must see the server's instance before the first connection.
    for _ in $(seq 100); do
      "$VPM_BINARY" apps --fleet --json --socket "$work/client.sock" 2>/dev/null | grep -q '"acme"' && break
      sleep 0.1
    done
  fi
  ip netns exec "$client" "$VPM_BINARY" exec --aid acme --config "$work/${config}client.yaml" --socket "$work/client.sock" -- \
    python3 "$work/connect.py" "$label" 9000 "$count" "$address"
}

if [ "${VPM_BENCH_FLEET:-1}" = 1 ]; then
  for address in 198.18.0.1 198.18.0.100; do
    label=fleet; [ "$address" = 198.18.0.100 ] && label=service
    make_hosts
    ip netns exec "$server" etcd --name m0 --data-dir "$work/etcd-$label" \
      --listen-client-urls http://198.18.0.1:2379 --advertise-client-urls http://198.18.0.1:2379 \
      --listen-peer-urls http://198.18.0.1:2380 --initial-advertise-peer-urls http://198.18.0.1:2380 \
      --initial-cluster m0=http://198.18.0.1:2380 >"$work/etcd-$label.log" 2>&1 &
    for _ in $(seq 100); do ip netns exec "$server" ss -Htln "sport = :2379" | grep -q . && break; sleep 0.1; done
    run_pass "$label" kernel fleet- "$address"
    stop_hosts
  done
fi
for datapath in "${datapaths[@]}"; do
  make_hosts
  run_pass "$datapath" "$datapath" "" 198.18.0.1
  stop_hosts
done
