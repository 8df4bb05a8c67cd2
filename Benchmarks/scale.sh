#!/usr/bin/env bash
# make bench-scale: how the engine's costs grow with its work. For each case a fresh pair of
# namespaces, the real engine (release build) and real flows; prints a table, writes
# Benchmarks/results/scale-DATE.json and its chart (Benchmarks/scale-chart.sh) next to it. Not part of make test.
#
# Cases (each on both datapaths unless said):
#   flows  N live UDP flows (one datagram each from its own client address and port, sent
#          by Benchmarks/scale.py fill), N = 10k, 100k, 1M; the kernel datapath stops at what
#          conntrack holds in a namespace here (nf_conntrack_max, 262,144 on this kernel, is
#          a host setting the bench leaves alone)
#   rules  10, 1,000 and 100,000 source rules (one per client address; the measuring client
#          matches one of them)
#   aids   10 and 1,000 AIDs, each with a source rule and an instance
# Figures per case: engine start (s), engine RSS before and after the flows (KiB, and
# bytes per flow), new TCP connections a second (one after another, from one client),
# TCP round trip (median, p99) through the engine, and `vpm flows --json`'s time with the
# longest round trip that overlapped it (the packet path's stall while the table is dumped).
#
# Knobs: VPM_BINARY (else a release build), VPM_SCALE_DATAPATHS ("kernel userspace"),
# VPM_SCALE_FLOWS ("10000 100000 1000000"), VPM_SCALE_RULES ("10 1000 100000"),
# VPM_SCALE_AIDS ("10 1000"), VPM_SCALE_SECONDS (3, per measurement), VPM_SCALE_RATE
# (datagrams a second while filling, 40000), VPM_SCALE_RESULTS (JSON path).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "bench-scale: needs root (namespaces, NFQUEUE); run: sudo make bench-scale" >&2; exit 1; }
read -r -a datapaths <<<"${VPM_SCALE_DATAPATHS:-kernel userspace}"
read -r -a flow_counts <<<"${VPM_SCALE_FLOWS:-10000 100000 1000000}"
read -r -a rule_counts <<<"${VPM_SCALE_RULES:-10 1000 100000}"
read -r -a aid_counts <<<"${VPM_SCALE_AIDS:-10 1000}"
seconds=${VPM_SCALE_SECONDS:-3}
rate=${VPM_SCALE_RATE:-40000}
stamp=$(date -u +%Y%m%dT%H%M%SZ)
results=${VPM_SCALE_RESULTS:-Benchmarks/results/scale-$stamp.json}
scripts/install-deps.sh
for package in python3 socat gnuplot-nox; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" && continue
  echo "bench-scale: installing $package"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package" >/dev/null
done
if [ -z "${VPM_BINARY:-}" ]; then
  swift build -c release --product vpm
  VPM_BINARY="$(swift build -c release --show-bin-path)/vpm"
fi

prefix=vpmz-$$
server=$prefix-s
client=$prefix-c
work=$(mktemp -d /tmp/vpm-scale.XXXXXX)
source Benchmarks/namespaces.sh
stop_hosts() { stop_namespaces "$server" "$client"; }
trap 'stop_hosts; rm -rf "$work"' EXIT
# Fill addresses: 60,000 source ports each (scale.py fill), so 17 cover a million flows.
fill_addresses=()
for n in $(seq 10 26); do fill_addresses+=("198.18.1.$n"); done
measuring=198.18.1.2

make_hosts() {
  ip netns add "$server"; ip netns add "$client"
  ip link add "$prefix-a" netns "$server" type veth peer name "$prefix-b" netns "$client"
  ip -n "$server" addr add 198.18.0.1/16 dev "$prefix-a"
  ip -n "$client" addr add "$measuring/16" dev "$prefix-b"
  for ns in "$server" "$client"; do ip -n "$ns" link set lo up; done
  ip -n "$server" link set "$prefix-a" up; ip -n "$client" link set "$prefix-b" up
  # The fill's one-way UDP flows must outlive the measurements in conntrack too.
  ip netns exec "$server" sysctl -qw net.netfilter.nf_conntrack_udp_timeout=600 net.core.somaxconn=4096
}
rss() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
stats_json() { "$VPM_BINARY" stats --json --socket "$work/vpm.sock"; }
active_flows() { stats_json | python3 -c 'import json,sys; print(json.load(sys.stdin)["flowsActive"])'; }

# write_configuration RULES AIDS: acme serves the measuring client (9000 and 5353/udp), the
# other AIDs one instance each; RULES source rules in all, spread over the AIDs.
write_configuration() {
  python3 - "$1" "$2" >"$work/vpm.yaml" <<'PYTHON'
import sys
rules, aids = int(sys.argv[1]), int(sys.argv[2])
print("virtual-ports: 20000-21999\nports: [9000, 5353/udp]\napplications:")
print("  acme: {instances: {9000: 20017, 5353/udp: 20117}}")
for n in range(1, aids):
    print(f"  aid{n}: {{instances: {{9000: {21000 + n - 1}}}}}")
print("sources:\n  - {from: 198.18.1.0/24, aid: acme}")
# /32 rules outside the client's /24, within 198.18.0.0/15: 198.19.0.0/16, then 198.18.128.0/17,
# then 198.18.64.0/18 (114,688 addresses in all).
blocks = [(198, 19, 0, 256), (198, 18, 128, 128), (198, 18, 64, 64)]
def address(n):
    for a, b, start, count in blocks:
        if n < count * 256:
            return f"{a}.{b}.{start + n // 256}.{n % 256}"
        n -= count * 256
    raise SystemExit("too many rules")
for n in range(rules - 1):
    aid = "acme" if aids == 1 else ("acme" if n % aids == 0 else f"aid{n % aids}")
    print(f"  - {{from: {address(n)}, aid: {aid}}}")
print("flows:\n  capacity: 1100000\n  timeouts: {udp: 1h}")
PYTHON
}

records=()
# run_case KIND VALUE DATAPATH FLOWS
run_case() {
  local kind=$1 value=$2 datapath=$3 flows=$4
  echo "== $kind $value, $datapath datapath${flows:+, $flows flows}" >&2
  make_hosts
  # The userspace datapath restores the flows the last engine saved: each case starts empty.
  rm -f "$work/vpm.sock.flows"
  ip netns exec "$server" python3 Benchmarks/scale.py serve 20017 >/dev/null 2>&1 &
  ip netns exec "$server" socat -u UDP-RECV:20117 /dev/null >/dev/null 2>&1 &
  local started now engine
  started=$(date +%s.%N)
  ip netns exec "$server" "$VPM_BINARY" run --config "$work/vpm.yaml" --socket "$work/vpm.sock" \
    --datapath "$datapath" >"$work/engine.log" 2>&1 &
  for _ in $(seq 1200); do grep -q "engine running" "$work/engine.log" && break; sleep 0.1; done
  grep -q "datapath=$datapath" "$work/engine.log" || { cat "$work/engine.log" >&2; exit 1; }
  now=$(date +%s.%N)
  # The engine's process: comm is the binary's name (VPM_BINARY may be a renamed copy), cut to 15.
  local comm; comm=$(basename "$VPM_BINARY" | cut -c1-15)
  engine=$(ip netns pids "$server" | while read -r pid; do
    if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$comm" ]; then echo "$pid"; fi; done | head -1)
  [ -n "$engine" ] || { echo "bench-scale: no $comm process in $server" >&2; cat "$work/engine.log" >&2; exit 1; }
  sleep 1
  local baseline active=0 filled="{}"
  baseline=$(rss "$engine")
  if [ "$flows" -gt 0 ]; then
    local needed=$(( (flows + 59999) / 60000 ))
    for address in "${fill_addresses[@]:0:$needed}"; do ip -n "$client" addr add "$address/16" dev "$prefix-b"; done
    filled=$(ip netns exec "$client" python3 Benchmarks/scale.py fill 198.18.0.1 5353 "$flows" "$rate" "${fill_addresses[@]:0:$needed}")
    # Until the table stops growing (the engine may still be working through its queue).
    # The kernel datapath decides these flows itself and the engine learns them from its
    # conntrack dumps, every 5 s: the table must hold still for longer than that.
    local last=-1 still=0
    for _ in $(seq 180); do
      active=$(active_flows)
      [ "$active" -ge "$flows" ] && break
      if [ "$active" -eq "$last" ]; then still=$((still + 1)); else still=0; fi
      [ "$still" -ge 7 ] && break
      last=$active; sleep 1
    done
  fi
  sleep 2
  local loaded
  loaded=$(rss "$engine")
  local connect pingpong dump_start dump_end stall
  connect=$(ip netns exec "$client" python3 Benchmarks/scale.py connect 198.18.0.1 9000 "$seconds")
  ip netns exec "$client" python3 Benchmarks/scale.py pingpong 198.18.0.1 9000 "$((seconds + 2))" "$work/pings" >"$work/pingpong.json" &
  local pinger=$!
  sleep 1
  dump_start=$(date +%s.%N)
  local dumped=true
  "$VPM_BINARY" flows --json --socket "$work/vpm.sock" >/dev/null 2>"$work/dump.err" || dumped=false
  dump_end=$(date +%s.%N)
  wait "$pinger"
  pingpong=$(cat "$work/pingpong.json")
  stall=$(python3 Benchmarks/scale.py stall "$work/pings" "$dump_start" "$dump_end" "$dumped" "$work/dump.err")
  local statistics peak
  statistics=$(stats_json)
  peak=$(awk '/^VmHWM/ {print $2}' "/proc/$engine/status")
  records+=("$(python3 - "$kind" "$value" "$datapath" "$flows" "$active" "$baseline" "$loaded" "$peak" \
    "$(python3 -c "print(round($now - $started, 2))")" "$filled" "$connect" "$pingpong" "$stall" "$statistics" <<'PYTHON'
import json, sys
kind, value, datapath, flows, active, baseline, loaded, peak, start, filled, connect, pingpong, stall, statistics = sys.argv[1:]
statistics = json.loads(statistics)
active, baseline, loaded = int(active), int(baseline), int(loaded)
print(json.dumps({
    "case": kind, "value": int(value), "datapath": datapath, "flowsAsked": int(flows), "flowsActive": active,
    "engineStartSeconds": float(start), "rssKiB": {"baseline": baseline, "loaded": loaded, "peak": int(peak)},
    "bytesPerFlow": round((loaded - baseline) * 1024 / active) if active >= 1000 else None,
    "fill": json.loads(filled), "connect": json.loads(connect), "pingpong": json.loads(pingpong), "dump": json.loads(stall),
    "engine": {key: statistics.get(key, 0) for key in ("packetsQueued", "flowsDecidedInKernel", "kernelQueueDropped",
                                                        "kernelUserDropped", "receiveBufferOverruns", "flowsRefusedFull")},
}))
PYTHON
)")
  echo "${records[-1]}" >&2
  stop_hosts
}

for datapath in "${datapaths[@]}"; do
  write_configuration 10 1
  run_case flows 0 "$datapath" 0
  for flows in "${flow_counts[@]}"; do
    if [ "$datapath" = kernel ] && [ "$flows" -gt 200000 ]; then
      echo "== flows $flows, kernel datapath: skipped (conntrack holds 262,144 entries in a namespace here)" >&2
      continue
    fi
    run_case flows "$flows" "$datapath" "$flows"
  done
  for rules in "${rule_counts[@]}"; do
    write_configuration "$rules" 2
    run_case rules "$rules" "$datapath" 0
  done
  for aids in "${aid_counts[@]}"; do
    write_configuration "$aids" "$aids"
    run_case aids "$aids" "$datapath" 0
  done
done

mkdir -p "$(dirname "$results")"
printf '%s\n' "${records[@]}" | python3 -c '
import json, sys
records = [json.loads(line) for line in sys.stdin]
json.dump({"started": sys.argv[1], "cases": records}, open(sys.argv[2], "w"), indent=1)
' "$stamp" "$results"
python3 - "$results" <<'PYTHON'
import json, sys
record = json.load(open(sys.argv[1]))
print(f"{'case':<16} {'datapath':<10} {'flows':>9} {'start s':>8} {'RSS MiB':>8} {'B/flow':>7} {'conn/s':>7} {'RTT med µs':>10} {'RTT p99 µs':>10} {'dump s':>7} {'stall ms':>9}")
for c in record["cases"]:
    print(f"{c['case'] + ' ' + str(c['value']):<16} {c['datapath']:<10} {c['flowsActive']:>9} {c['engineStartSeconds']:>8} "
          f"{c['rssKiB']['loaded'] / 1024:>8.1f} {c['bytesPerFlow'] or '-':>7} {c['connect']['perSecond']:>7} "
          f"{c['pingpong']['medianUs']:>10} {c['pingpong']['p99Us']:>10} {'failed' if c['dump'].get('failed') else c['dump']['dumpSeconds']:>7} "
          f"{c['dump']['longestRoundTripDuringDumpMs'] or '-':>9}")
PYTHON
Benchmarks/scale-chart.sh "$results" "${results%.json}.png"
echo "bench-scale: record in $results, chart in ${results%.json}.png"
