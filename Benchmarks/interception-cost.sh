#!/usr/bin/env bash
# The cost of vpm exec's interception (root, under a minute): the same C program
# (Benchmarks/interception/calls.c) makes the same calls plain and under `vpm exec`, in a
# throwaway network namespace with an engine; medians of 3 runs, ratio exec / plain.
#   bind+listen on the initial port 9000 (under vpm exec: a round trip to the engine)
#   getsockname on it (under vpm exec: answered by the supervisor with the initial port)
#   connect to a port that is not multiplexed (under vpm exec: to the supervisor and back)
#   sendto from an unconnected UDP socket to a port that is not multiplexed: under vpm exec
#   with a configuration that routes no UDP client by AID (not intercepted), and with one
#   that does (local mode and a UDP initial port: to the supervisor and back)
# and whole runs of /bin/true (milliseconds, median of 11): plain, under vpm exec --aid
# acme, and under vpm exec --new-aid (making a tenant, joining it, and its end), against a
# second engine with a tenants: section in a namespace of its own.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "bench-exec: needs root (a namespace and an engine); run: sudo make bench-exec" >&2; exit 1; }
scripts/install-deps.sh
if [ -z "${VPM_BINARY:-}" ]; then
  swift build -c release --product vpm
  VPM_BINARY="$(swift build -c release --show-bin-path)/vpm"
fi
work=$(mktemp -d /tmp/vpm-exec-bench.XXXXXX)
namespace=vpmxb-$$
tenant_namespace=vpmxt-$$
engine=""
tenant_engine=""
cleanup() {
  for pid in $engine $tenant_engine; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; done
  for ns in "$namespace" "$tenant_namespace"; do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null
    ip netns delete "$ns" 2>/dev/null
  done
  rm -rf "$work"
}
trap cleanup EXIT
ip netns add "$namespace"
ip -n "$namespace" link set lo up
cc -O2 -Wall -Wextra -Werror -pthread -o "$work/calls" Benchmarks/interception/calls.c
cat > "$work/vpm.yaml" <<YAML
virtual-ports: 20000-20999
ports: [9000]
applications:
  acme: {}
YAML
# The same engine, as a configuration with local mode and a UDP initial port describes it to
# vpm exec: its sendto() calls that name a destination are intercepted.
cat "$work/vpm.yaml" - > "$work/vpm-udp.yaml" <<YAML
cooperative: {local: true}
YAML
sed -i 's/^ports: \[9000\]/ports: [9000, 5353\/udp]/' "$work/vpm-udp.yaml"
ip netns exec "$namespace" "$VPM_BINARY" run --config "$work/vpm.yaml" --socket "$work/vpm.sock" >"$work/engine.log" 2>&1 &
engine=$!
for _ in $(seq 100); do [ -S "$work/vpm.sock" ] && break; sleep 0.1; done
[ -S "$work/vpm.sock" ] || { cat "$work/engine.log"; echo "bench-exec: the engine did not start" >&2; exit 1; }

run() {  # run plain|exec|exec-udp MODE N PORT -> median nanoseconds per call of 3 runs
  local how=$1; shift
  local prefix=(ip netns exec "$namespace")
  [ "$how" = exec ] && prefix+=("$VPM_BINARY" exec --aid acme --config "$work/vpm.yaml" --socket "$work/vpm.sock" --)
  [ "$how" = exec-udp ] && prefix+=("$VPM_BINARY" exec --aid acme --config "$work/vpm-udp.yaml" --socket "$work/vpm.sock" --)
  for _ in 1 2 3; do timeout 120 "${prefix[@]}" "$work/calls" "$@" | awk '{print $3}'; done | sort -n | sed -n 2p
}

printf '%-34s %12s %12s %8s\n' "call (per call)" "plain ns" "vpm exec ns" "ratio"
for spec in "exec bind 2000 9000:bind+listen on the initial port" \
            "exec getsockname 100000 9000:getsockname" \
            "exec connect 5000 7000:connect to a port not multiplexed" \
            "exec sendto 100000 7000:sendto, UDP not routed by AID" \
            "exec-udp sendto 20000 7000:sendto, UDP routed by AID"; do
  read -r how mode count port <<<"${spec%%:*}"
  plain=$(run plain "$mode" "$count" "$port")
  intercepted=$(run "$how" "$mode" "$count" "$port")
  ratio=$(awk -v a="$intercepted" -v b="$plain" 'BEGIN { printf "%.1f", a / b }')
  printf '%-34s %12s %12s %7sx\n' "${spec#*:}" "$plain" "$intercepted" "$ratio"
done

# Whole runs: what a vpm exec costs, and what making a tenant adds to it.
cat "$work/vpm-udp.yaml" - > "$work/vpm-tenants.yaml" <<YAML
tenants: {}
YAML
ip netns add "$tenant_namespace"
ip -n "$tenant_namespace" link set lo up
ip netns exec "$tenant_namespace" "$VPM_BINARY" run --config "$work/vpm-tenants.yaml" --socket "$work/vpm-t.sock" >"$work/engine-t.log" 2>&1 &
tenant_engine=$!
for _ in $(seq 100); do [ -S "$work/vpm-t.sock" ] && break; sleep 0.1; done
[ -S "$work/vpm-t.sock" ] || { cat "$work/engine-t.log"; echo "bench-exec: the tenants' engine did not start" >&2; exit 1; }
whole() {  # whole ARGS... -> median milliseconds of 11 runs
  for _ in $(seq 11); do
    local start end
    start=$(date +%s%N)
    timeout 30 ip netns exec "$tenant_namespace" "$@" >/dev/null 2>&1
    end=$(date +%s%N)
    echo $(( (end - start) / 1000 ))
  done | sort -n | sed -n 6p | awk '{ printf "%.2f", $1 / 1000 }'
}
exec_args=(exec --config "$work/vpm-tenants.yaml" --socket "$work/vpm-t.sock")
plain=$(whole /bin/true)
configured=$(whole "$VPM_BINARY" "${exec_args[@]}" --aid acme -- /bin/true)
tenant=$(whole "$VPM_BINARY" "${exec_args[@]}" --new-aid -- /bin/true)
printf '\n%-34s %12s\n' "whole run of /bin/true" "median ms"
printf '%-34s %12s\n' "plain" "$plain" "vpm exec --aid acme" "$configured" "vpm exec --new-aid (a tenant)" "$tenant"
grep -c "tenant made" "$work/engine-t.log" | awk '{ if ($1 < 11) { print "bench-exec: only " $1 " tenants were made" > "/dev/stderr"; exit 1 } }'
