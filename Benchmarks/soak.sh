#!/usr/bin/env bash
# make soak: the engine under load for minutes, on each datapath; prints its figures and
# writes a JSON record to Benchmarks/results/soak-DATE.json. Not part of make test.
#
# Two namespaces joined by a veth pair: the server host 198.18.0.1 runs `vpm run` and two
# instances (Benchmarks/soak.py server: acme on 20017, globex on 20018, each answering with
# its AID); the client host has acme's addresses 198.18.1.2-5 and globex's 198.18.2.2-5.
# On each datapath, in order:
#   hold   10,000 connections (half per AID) opened and held while the churn runs, each
#          checked when opened and again before it closes (misrouted, reset, timeout counted)
#   churn  1,000 new connections a second for 60 s, each a request and its answer
#   flood  spoofed SYNs from acme's network at the initial port for 30 s while legitimate
#          clients keep connecting (100 a second): the flow table's bound, evictions and the
#          legitimate clients' success
#   after  the engine's RSS once the flows expired (timeouts shortened for the soak)
# The engine's RSS is sampled every 2 s throughout.
#
# On the socket datapath the flood meets the sk_lookup program, not the engine: the record
# also counts conntrack's entries on the initial port at the flood's end (none expected).
# Knobs: VPM_BINARY (else a release build), VPM_SOAK_DATAPATHS ("socket kernel userspace"),
# VPM_SOAK_HOLD (10000), VPM_SOAK_RATE (1000), VPM_SOAK_SECONDS (60), VPM_SOAK_FLOOD_PPS
# (20000), VPM_SOAK_FLOOD_SECONDS (30).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "soak: needs root (namespaces, NFQUEUE); run: sudo make soak" >&2; exit 1; }
hold=${VPM_SOAK_HOLD:-10000}
rate=${VPM_SOAK_RATE:-1000}
seconds=${VPM_SOAK_SECONDS:-60}
flood_pps=${VPM_SOAK_FLOOD_PPS:-20000}
flood_seconds=${VPM_SOAK_FLOOD_SECONDS:-30}
read -r -a datapaths <<<"${VPM_SOAK_DATAPATHS:-socket kernel userspace}"
scripts/install-deps.sh
if [ -z "${VPM_BINARY:-}" ]; then
  swift build -c release --product vpm
  VPM_BINARY="$(swift build -c release --show-bin-path)/vpm"
fi

prefix=vpms-$$
server=$prefix-s
client=$prefix-c
work=$(mktemp -d /tmp/vpm-soak.XXXXXX)
source Benchmarks/namespaces.sh
stop_hosts() { stop_namespaces "$server" "$client"; }
trap 'stop_hosts; rm -rf "$work"' EXIT

cat >"$work/vpm.yaml" <<EOY
virtual-ports: 20000-20999
ports: [9000]
applications:
  acme: {instances: {9000: 20017}}
  globex: {instances: {9000: 20018}}
sources:
  - {from: 198.18.1.0/24, aid: acme}
  - {from: 198.18.2.0/24, aid: globex}
flows:
  capacity: 65536
  timeouts: {opening: 10s, closing: 10s, closed: 5s}
EOY
acme=(198.18.1.2 198.18.1.3 198.18.1.4 198.18.1.5)
globex=(198.18.2.2 198.18.2.3 198.18.2.4 198.18.2.5)
clients=("${acme[@]}" "${globex[@]}")

make_hosts() {
  ip netns add "$server"; ip netns add "$client"
  ip link add "$prefix-a" netns "$server" type veth peer name "$prefix-b" netns "$client"
  ip -n "$server" addr add 198.18.0.1/16 dev "$prefix-a"
  for address in "${clients[@]}"; do ip -n "$client" addr add "$address/16" dev "$prefix-b"; done
  for ns in "$server" "$client"; do
    ip -n "$ns" link set lo up
    ip netns exec "$ns" sysctl -qw net.core.somaxconn=65535 net.ipv4.tcp_max_syn_backlog=65535 net.ipv4.tcp_tw_reuse=1
  done
  ip -n "$server" link set "$prefix-a" up; ip -n "$client" link set "$prefix-b" up
}
rss() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
stats_json() { "$VPM_BINARY" stats --json --socket "$work/vpm.sock"; }

# One run's figures, as people read them.
summary=$(cat <<'EOF'
import json, sys
r = json.load(sys.stdin)
h, c, l, f, m = r["hold"], r["churn"], r["legitimateDuringFlood"], r["engineAfterFlood"], r["engineRSSKiB"]
print(f"  hold:  {h.get('asked')} asked, opened {h.get('opened')}, checked after {h.get('heldSeconds')} s: {h.get('checkedAfter')}")
print(f"  churn: {c.get('started')} connections at {c.get('achievedPerSecond')}/s: {c.get('outcomes')}, latency ms {c.get('latencyMs')}")
print(f"  flood: {r['flood'].get('sent')} spoofed SYNs at {r['flood'].get('achievedPps')}/s; legitimate meanwhile: {l.get('outcomes')}")
print(f"  table: {f['flowsActive']} of {f['flowCapacity']} flows after the flood, {f['flowsEvicted']} evicted, "
      f"{f['flowsRefusedFull']} refused full; kernel queue drops {f['kernelQueueDropped']}, socket {f['kernelUserDropped']}; "
      f"conntrack entries on the initial port {r['conntrackEntriesOnInitialPortAfterFlood']}")
print(f"  engine RSS KiB: baseline {m['baseline']}, holding {m['holding']}, peak {m['peak']}, "
      f"after expiry {m['afterExpiry']} ({r['engineAfterExpiry']['flowsActive']} flows left after {r['expirySeconds']} s)")
EOF
)
records=()
for datapath in "${datapaths[@]}"; do
  echo "== $datapath datapath"
  make_hosts
  ip netns exec "$server" python3 Benchmarks/soak.py server acme 20017 >"$work/acme.log" 2>&1 &
  ip netns exec "$server" python3 Benchmarks/soak.py server globex 20018 >"$work/globex.log" 2>&1 &
  ip netns exec "$server" "$VPM_BINARY" run --config "$work/vpm.yaml" --socket "$work/vpm.sock" \
    --datapath "$datapath" >"$work/engine-$datapath.log" 2>&1 &
  for _ in $(seq 100); do grep -q "engine running" "$work/engine-$datapath.log" && break; sleep 0.1; done
  grep -q "datapath=$datapath" "$work/engine-$datapath.log" || { cat "$work/engine-$datapath.log" >&2; exit 1; }
  engine=$(ip netns pids "$server" | while read -r pid; do
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = vpm ] && echo "$pid"; done | head -1)
  sleep 1
  baseline=$(rss "$engine")
  ( while kill -0 "$engine" 2>/dev/null; do echo "$(date +%s) $(rss "$engine")"; sleep 2; done ) >"$work/rss-$datapath.txt" &

  # hold + churn
  ip netns exec "$client" python3 Benchmarks/soak.py hold "$hold" "$((seconds + 10))" "${clients[@]}" \
    >"$work/hold-$datapath.json" 2>"$work/hold-$datapath.err" &
  holder=$!
  for _ in $(seq 600); do grep -q '"phase": "held"' "$work/hold-$datapath.json" && break; sleep 0.1; done
  during_hold=$(rss "$engine")
  ip netns exec "$client" python3 Benchmarks/soak.py churn "$rate" "$seconds" "${clients[@]}" \
    >"$work/churn-$datapath.json" 2>"$work/churn-$datapath.err"
  during_churn=$(rss "$engine")
  wait "$holder" || true
  stats_churn=$(stats_json)

  # flood, with legitimate clients
  ip netns exec "$client" python3 Benchmarks/soak.py flood "$flood_pps" "$flood_seconds" \
    >"$work/flood-$datapath.json" 2>"$work/flood-$datapath.err" &
  flooder=$!
  ip netns exec "$client" python3 Benchmarks/soak.py churn 100 "$flood_seconds" "${clients[@]}" \
    >"$work/legit-$datapath.json" 2>"$work/legit-$datapath.err"
  wait "$flooder" || true
  during_flood=$(rss "$engine")
  stats_flood=$(stats_json)
  tracked_flood=$(ip netns exec "$server" conntrack -L -p tcp --orig-port-dst 9000 2>/dev/null | grep -c "dport=9000" || true)

  # after: the flows idle past their timeouts (opening 10 s, closing 10 s, closed 5 s). The
  # flood's flows stay as long as the server retransmits its SYN-ACKs to the spoofed
  # addresses (about a minute): wait until at most 1% of the held count is left, 120 s at most.
  expiry_started=$(date +%s)
  while [ $(( $(date +%s) - expiry_started )) -lt 120 ]; do
    active=$(stats_json | python3 -c 'import json,sys; print(json.load(sys.stdin)["flowsActive"])')
    [ "$active" -le $((hold / 100)) ] && break
    sleep 5
  done
  expiry_seconds=$(( $(date +%s) - expiry_started ))
  after=$(rss "$engine")
  stats_after=$(stats_json)
  stop_hosts

  record=$(python3 - "$datapath" "$work" "$baseline" "$during_hold" "$during_churn" "$during_flood" "$after" \
      "$stats_churn" "$stats_flood" "$stats_after" "$expiry_seconds" "$tracked_flood" <<'EOF'
import json, sys
datapath, work, baseline, hold_rss, churn_rss, flood_rss, after_rss = sys.argv[1:8]
stats = [json.loads(text) for text in sys.argv[8:11]]
expiry_seconds = int(sys.argv[11])
tracked_flood = int(sys.argv[12] or 0)
def last_json(path):
    lines = [line for line in open(path).read().splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else {"error": open(path.replace(".json", ".err")).read()[-2000:]}
samples = [int(line.split()[1]) for line in open(f"{work}/rss-{datapath}.txt") if line.split()[1].isdigit()]
keep = ["flowsActive", "flowCapacity", "flowsInserted", "flowsEvicted", "flowsRefusedFull", "refused", "dropped",
        "flowsDecidedInKernel", "flowsRefusedInKernel",
        "kernelQueueDropped", "kernelUserDropped", "receiveBufferOverruns", "reasons"]
print(json.dumps({
    "datapath": datapath,
    "hold": last_json(f"{work}/hold-{datapath}.json"),
    "churn": last_json(f"{work}/churn-{datapath}.json"),
    "flood": last_json(f"{work}/flood-{datapath}.json"),
    "legitimateDuringFlood": last_json(f"{work}/legit-{datapath}.json"),
    "engineRSSKiB": {"baseline": int(baseline), "holding": int(hold_rss), "afterChurn": int(churn_rss),
                     "afterFlood": int(flood_rss), "afterExpiry": int(after_rss), "peak": max(samples or [0])},
    "engineAfterChurn": {k: stats[0].get(k) for k in keep},
    "engineAfterFlood": {k: stats[1].get(k) for k in keep},
    "engineAfterExpiry": {k: stats[2].get(k) for k in keep},
    "expirySeconds": expiry_seconds,
    "conntrackEntriesOnInitialPortAfterFlood": tracked_flood,
}))
EOF
)
  records+=("$record")
  echo "$record" | python3 -c "$summary"
done

mkdir -p Benchmarks/results
out="Benchmarks/results/soak-$(date -u +%Y%m%dT%H%M%SZ).json"
printf '%s\n' "${records[@]}" | python3 -c '
import json, sys
print(json.dumps({"hold": int(sys.argv[1]), "rate": int(sys.argv[2]), "seconds": int(sys.argv[3]),
                  "floodPps": int(sys.argv[4]), "floodSeconds": int(sys.argv[5]), "vpm": sys.argv[6],
                  "runs": [json.loads(line) for line in sys.stdin if line.strip()]}, indent=2))
' "$hold" "$rate" "$seconds" "$flood_pps" "$flood_seconds" "$("$VPM_BINARY" --version)" >"$out"
echo "record: $out"
