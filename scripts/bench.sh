#!/usr/bin/env bash
# make bench: vpm side by side with kernel NAT and haproxy, same run, same topology.
#
# Two throwaway namespaces joined by a veth pair: a client (198.18.0.2, 2001:db8::2) and a
# server (198.18.0.1, 2001:db8::1). The client always dials an initial port; the same real
# servers listen on virtual ports behind it:
#   9000 -> 20017      iperf3   bulk TCP throughput, 1 stream and 4 streams; 1 stream over IPv6
#   9001 -> 20018      sockperf TCP ping-pong, median and p99 round trip
#   9002 -> 20019      nginx    new connections per second (wrk, Connection: close)
#   9003/udp -> 20020  sockperf UDP request/response, median round trip (not haproxy: it
#                      carries TCP only)
# Paths: kernel-nat (iptables REDIRECT, nat PREROUTING), haproxy (mode tcp), vpm (the
# kernel datapath, where the engine decides each SYN and nft NAT carries the connection;
# the bench fails if it fell back), vpm-userspace (every
# packet through the engine, rewritten, GSO on) and vpm-userspace-no-gso (the same without
# GSO super-packets), vpm-socket (`--datapath socket`, the engine's default: a BPF sk_lookup
# program hands each TCP connection to its listener, no NAT, no conntrack for the managed
# ports; UDP on kernel NAT) and plain (no vpm, no rules: the client dials the servers' own ports, the limit any
# path can reach). Every path gets fresh namespaces for every round, so no
# path inherits another's conntrack or rules. Rounds alternate the order of the paths; the
# table shows each figure's median over the rounds and its ratio to kernel-nat.
# CPU per gigabit, during the bulk runs, divided by the gigabits moved: utime+stime
# (/proc/PID/stat) of the engine or haproxy alone ("process"), of it plus the iperf3 client
# and server ("path"), and of the whole machine (/proc/stat, JSON record only).
# Ping-pong runs with every process of the path pinned to CPU 0 (see measure_ping_pong).
#
# Knobs (environment): VPM_BENCH_ROUNDS (3), VPM_BENCH_SECONDS (5 per measurement),
# VPM_BENCH_PATHS ("plain kernel-nat haproxy vpm vpm-socket vpm-userspace vpm-userspace-no-gso"),
# VPM_BENCH_RESULTS (JSON record,
# Benchmarks/results/bench-results.json), VPM_BINARY (skip the build, use this vpm),
# VPM_BENCH_SCRATCH (swift build --scratch-path), VPM_BENCH_PROFILE=1 (perf samples the
# engine during each vpm measurement; the reports go next to the JSON record),
# VPM_BENCH_MEASUREMENTS ("bulk1 bulk4 bulk6 pingpong udp connections": a subset for an A/B),
# VPM_BENCH_CONNTRACK_EVENTS (0: conntrack events off in the server's namespace).
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=${VPM_BENCH_ROUNDS:-3}
duration=${VPM_BENCH_SECONDS:-5}
read -r -a paths <<<"${VPM_BENCH_PATHS:-plain kernel-nat haproxy vpm vpm-socket vpm-userspace vpm-userspace-no-gso}"
results=${VPM_BENCH_RESULTS:-Benchmarks/results/bench-results.json}
profile=${VPM_BENCH_PROFILE:-0}
read -r -a measurements <<<"${VPM_BENCH_MEASUREMENTS:-bulk1 bulk4 bulk6 pingpong udp connections}"
conntrack_events=${VPM_BENCH_CONNTRACK_EVENTS:-}
measuring() { [[ " ${measurements[*]} " == *" $1 "* ]]; }

if [ "$(id -u)" -ne 0 ]; then
  echo "bench: needs root (network namespaces, iptables, NFQUEUE); run: sudo make bench" >&2
  exit 1
fi

# --- what the benchmark needs from Debian --------------------------------------------------
scripts/install-deps.sh
bench_packages=(iperf3 sockperf wrk nginx-light haproxy python3 procps util-linux gnuplot-nox)
[ "$profile" = 1 ] && bench_packages+=(linux-perf)
missing=()
for package in "${bench_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "bench: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # nginx and haproxy start their system services when installed; the bench runs its own.
  # policy-rc.d (Debian's switch for maintainer scripts) keeps them from starting.
  policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    policy=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
  fi
  status=0
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; } || status=$?
  [ -n "$policy" ] && rm -f "$policy"
  [ "$status" -eq 0 ] || { echo "bench: could not install ${missing[*]}" >&2; exit 1; }
fi

# --- vpm, release build ----------------------------------------------------------------------
if [ -z "${VPM_BINARY:-}" ]; then
  scratch=()
  [ -n "${VPM_BENCH_SCRATCH:-}" ] && scratch=(--scratch-path "$VPM_BENCH_SCRATCH")
  echo "bench: swift build -c release ${scratch[*]}"
  swift build -c release "${scratch[@]}" --product vpm
  VPM_BINARY="$(swift build -c release "${scratch[@]}" --show-bin-path)/vpm"
fi
[ -x "$VPM_BINARY" ] || { echo "bench: no vpm binary at $VPM_BINARY" >&2; exit 1; }

# --- throwaway hosts, removed on every exit ----------------------------------------------------
prefix=vpmb-$$
server=$prefix-s
client=$prefix-c
work=$(mktemp -d /tmp/vpm-bench.XXXXXX)
raw=$work/raw.tsv
: >"$raw"
pids=()

stop_processes() {
  local pid
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  pids=()
}

delete_hosts() {
  local namespace
  for namespace in "$server" "$client"; do
    ip netns pids "$namespace" 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
    ip netns delete "$namespace" 2>/dev/null || true
  done
}

cleanup() {
  stop_processes
  delete_hosts
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Namespaces of an earlier bench that was killed (its pid is gone): sweep them.
for namespace in $(ip netns list 2>/dev/null | awk '/^vpmb-[0-9]+-[sc]/ {print $1}'); do
  owner=${namespace#vpmb-}; owner=${owner%-*}
  kill -0 "$owner" 2>/dev/null && continue
  ip netns pids "$namespace" 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
  ip netns delete "$namespace" 2>/dev/null || true
done

in_server() { ip netns exec "$server" "$@"; }
in_client() { ip netns exec "$client" "$@"; }

make_hosts() {
  ip netns add "$server"
  ip netns add "$client"
  ip link add "vb$$s" netns "$server" type veth peer name "vb$$c" netns "$client"
  in_server ip addr add 198.18.0.1/24 dev "vb$$s"
  in_client ip addr add 198.18.0.2/24 dev "vb$$c"
  in_server ip addr add 2001:db8::1/64 dev "vb$$s" nodad
  in_client ip addr add 2001:db8::2/64 dev "vb$$c" nodad
  in_server ip link set lo up
  in_client ip link set lo up
  in_server ip link set "vb$$s" up
  in_client ip link set "vb$$c" up
  # wrk opens and closes tens of thousands of connections in a few seconds.
  in_client sysctl -qw net.ipv4.ip_local_port_range="10000 65000" net.ipv4.tcp_tw_reuse=1
  in_server sysctl -qw net.core.somaxconn=4096 net.ipv4.tcp_tw_reuse=1
}

wait_listening() { # port...
  local port
  for port in "$@"; do
    for _ in $(seq 100); do
      in_server ss -Hltn "sport = :$port" | grep -q . && break
      sleep 0.05
    done
    in_server ss -Hltn "sport = :$port" | grep -q . || { echo "bench: nothing listens on $port" >&2; return 1; }
  done
}

start_servers() {
  cat >"$work/nginx.conf" <<EOF
user root;
worker_processes 1;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path $work/nginx-body;
  proxy_temp_path $work/nginx-proxy;
  fastcgi_temp_path $work/nginx-fastcgi;
  uwsgi_temp_path $work/nginx-uwsgi;
  scgi_temp_path $work/nginx-scgi;
  server {
    listen 20019 backlog=4096;
    location / { return 200 "ok\n"; }
  }
}
EOF
  # Started with `ip netns exec` itself (not a shell function), so $! is the server's pid.
  ip netns exec "$server" iperf3 -s -p 20017 >"$work/iperf3-server.log" 2>&1 &
  iperf3_server_pid=$!
  pids+=($!)
  ip netns exec "$server" taskset -c 0 sockperf sr --tcp -i 0.0.0.0 -p 20018 >"$work/sockperf-server.log" 2>&1 &
  pids+=($!)
  ip netns exec "$server" taskset -c 0 sockperf sr -i 0.0.0.0 -p 20020 >"$work/sockperf-udp-server.log" 2>&1 &
  pids+=($!)
  ip netns exec "$server" nginx -c "$work/nginx.conf" >"$work/nginx.log" 2>&1 &
  pids+=($!)
  wait_listening 20017 20018 20019
  for _ in $(seq 100); do in_server ss -Hlun "sport = :20020" | grep -q . && break; sleep 0.05; done
  in_server ss -Hlun "sport = :20020" | grep -q . || { echo "bench: nothing listens on 20020/udp" >&2; return 1; }
}

# The path under test; sets path_pid to the userspace process that carries it (if any).
path_pid=""
# The ports the client dials: the initial ports, or for `plain` the servers' own.
bulk_port=9000 pingpong_port=9001 http_port=9002 udp_port=9003
start_path() { # path
  path_pid=""
  bulk_port=9000 pingpong_port=9001 http_port=9002 udp_port=9003
  case "$1" in
    plain)
      bulk_port=20017 pingpong_port=20018 http_port=20019 udp_port=20020
      ;;
    kernel-nat)
      in_server iptables -w -t nat -A PREROUTING -p tcp --dport 9000 -j REDIRECT --to-ports 20017
      in_server iptables -w -t nat -A PREROUTING -p tcp --dport 9001 -j REDIRECT --to-ports 20018
      in_server iptables -w -t nat -A PREROUTING -p tcp --dport 9002 -j REDIRECT --to-ports 20019
      in_server iptables -w -t nat -A PREROUTING -p udp --dport 9003 -j REDIRECT --to-ports 20020
      in_server ip6tables -w -t nat -A PREROUTING -p tcp --dport 9000 -j REDIRECT --to-ports 20017
      ;;
    haproxy)
      cat >"$work/haproxy.cfg" <<EOF
global
  maxconn 8000
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
listen bulk
  bind 198.18.0.1:9000
  bind [2001:db8::1]:9000
  server iperf3 127.0.0.1:20017
listen pingpong
  bind 198.18.0.1:9001
  server sockperf 127.0.0.1:20018
listen http
  bind 198.18.0.1:9002
  server nginx 127.0.0.1:20019
EOF
      ip netns exec "$server" haproxy -db -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 &
      path_pid=$!
      pids+=("$path_pid")
      wait_listening 9000 9001 9002 || { cat "$work/haproxy.log" >&2; return 1; }
      ;;
    vpm|vpm-socket|vpm-userspace|vpm-userspace-no-gso)
      cat >"$work/vpm.yaml" <<EOF
queue: 0
virtual-ports: 20000-20999
ports: [9000, 9001, 9002, 9003/udp]
applications:
  bench:
    instances:
      9000: 20017
      9001: 20018
      9002: 20019
      9003/udp: 20020
sources:
  - from: 198.18.0.2
    aid: bench
  - from: 2001:db8::2
    aid: bench
EOF
      local options=(--datapath kernel)  # vpm: the kernel datapath
      [ "$1" = vpm-userspace ] && options=(--datapath userspace)
      [ "$1" = vpm-userspace-no-gso ] && options=(--datapath userspace --no-gso)
      [ "$1" = vpm-socket ] && options=(--datapath socket)
      ip netns exec "$server" "$VPM_BINARY" run --config "$work/vpm.yaml" --socket "$work/vpm.sock" "${options[@]}" \
        >"$work/vpm-$1.log" 2>&1 &
      path_pid=$!
      pids+=("$path_pid")
      for _ in $(seq 100); do grep -q "engine running" "$work/vpm-$1.log" && break; sleep 0.05; done
      grep -q "engine running" "$work/vpm-$1.log" || { cat "$work/vpm-$1.log" >&2; return 1; }
      local expected=kernel
      [ "$1" != vpm ] && expected=userspace
      [ "$1" = vpm-socket ] && expected=socket
      if ! grep -q "datapath=$expected" "$work/vpm-$1.log"; then
        echo "bench: $1 should run the $expected datapath but did not:" >&2; cat "$work/vpm-$1.log" >&2; return 1
      fi
      ;;
    *) echo "bench: unknown path $1" >&2; return 1 ;;
  esac
}

process_ticks() { # pid -> utime+stime in clock ticks (all threads)
  [ -n "$1" ] && [ -r "/proc/$1/stat" ] || { echo 0; return; }
  awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}
machine_ticks() { # busy ticks of all CPUs
  awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat
}
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$raw"; }

# VPM_BENCH_PROFILE=1: perf samples the engine (its threads, kernel work in its context
# included) during one measurement.
perf_pid=""
start_profile() { # path label
  perf_pid=""
  if [ "$profile" = 1 ] && [ -n "$path_pid" ] && [ "${1#vpm}" != "$1" ]; then
    perf record -q -F 999 -g -p "$path_pid" -o "$work/perf-$1-$2.data" >/dev/null 2>&1 &
    perf_pid=$!
  fi
}
stop_profile() {
  if [ -n "$perf_pid" ]; then kill -INT "$perf_pid" 2>/dev/null || true; wait "$perf_pid" 2>/dev/null || true; fi
  perf_pid=""
}

measure_bulk() { # path round streams [address key-suffix]
  local path=$1 round=$2 streams=$3 address=${4:-198.18.0.1} suffix=${5:-} before_process before_machine json
  start_profile "$path" "bulk$streams-round$round"
  local before_server
  before_process=$(process_ticks "$path_pid")
  before_server=$(process_ticks "$iperf3_server_pid")
  before_machine=$(machine_ticks)
  # `times` in the subshell: the CPU time of the iperf3 client it waited for.
  ( in_client timeout $((duration + 20)) iperf3 -c "$address" -p "$bulk_port" -t "$duration" -O 1 \
      -P "$streams" --connect-timeout 3000 -J >"$work/iperf3.json" || exit 1
    times >"$work/iperf3-client.times"
  ) || { echo "bench: iperf3 failed on $path" >&2; cat "$work/iperf3.json" >&2; return 1; }
  json=$(cat "$work/iperf3.json")
  local process=$(( $(process_ticks "$path_pid") - before_process ))
  local server_ticks=$(( $(process_ticks "$iperf3_server_pid") - before_server ))
  local machine=$(( $(machine_ticks) - before_machine ))
  local client_seconds
  client_seconds=$(awk 'NR == 2 { gsub(/[ms]/, " "); print $1 * 60 + $2 + $3 * 60 + $4 }' "$work/iperf3-client.times")
  stop_profile
  local fields
  fields=$(python3 -c 'import json,sys; e=json.load(sys.stdin)["end"]["sum_received"]; print(e["bits_per_second"], e["bytes"], e["seconds"])' <<<"$json")
  read -r bits bytes seconds <<<"$fields"
  record "$path" "$round" "bulk${streams}${suffix}_gbps" "$(python3 -c "print($bits / 1e9)")"
  [ -z "$suffix" ] || return 0  # CPU per gigabit: IPv4 only
  # CPU seconds per gigabit moved, over the whole iperf3 run (the omitted first second included).
  local ticks; ticks=$(getconf CLK_TCK)
  local total_seconds=$((duration + 1))
  local gigabits; gigabits=$(python3 -c "print($bits * $total_seconds / 1e9)")
  [ -n "$path_pid" ] && record "$path" "$round" "bulk${streams}_process_cpu_s_per_gbit" \
    "$(python3 -c "print($process / $ticks / $gigabits)")"
  # Path CPU: the iperf3 client and server and the engine or haproxy (kernel work done in
  # their context included). Machine CPU: every CPU of the host, other users' load included.
  record "$path" "$round" "bulk${streams}_path_cpu_s_per_gbit" \
    "$(python3 -c "print((($process + $server_ticks) / $ticks + $client_seconds) / $gigabits)")"
  record "$path" "$round" "bulk${streams}_machine_cpu_s_per_gbit" "$(python3 -c "print($machine / $ticks / $gigabits)")"
}

# Ping-pong with every process of the path on CPU 0: client, server and the engine or
# haproxy. On this kind of VM a wakeup across CPUs costs tens of microseconds (a halted vCPU
# has to be scheduled by the host), so unpinned medians flip between ~7 and ~80 us for the
# same kernel path depending on where the scheduler puts the two processes.
measure_ping_pong() { # path round
  local output all_cpus
  all_cpus=0-$(( $(nproc) - 1 ))
  [ -n "$path_pid" ] && taskset -a -p -c 0 "$path_pid" >/dev/null
  start_profile "$1" "pingpong-round$2"
  output=$(in_client taskset -c 0 timeout $((duration + 20)) sockperf pp --tcp -i 198.18.0.1 -p "$pingpong_port" -t "$duration" -m 64 --full-rtt 2>&1) \
    || { echo "bench: sockperf failed on $1" >&2; echo "$output" >&2; return 1; }
  stop_profile
  [ -n "$path_pid" ] && taskset -a -p -c "$all_cpus" "$path_pid" >/dev/null
  record "$1" "$2" pingpong_median_us "$(awk '/percentile 50.000/ {print $NF}' <<<"$output")"
  record "$1" "$2" pingpong_p99_us "$(awk '/percentile 99.000/ {print $NF}' <<<"$output")"
}

# UDP request/response: sockperf's UDP ping-pong, pinned as the TCP one is. haproxy carries
# TCP only: nothing to measure there.
measure_udp() { # path round
  [ "$1" = haproxy ] && return 0
  local output all_cpus
  all_cpus=0-$(( $(nproc) - 1 ))
  [ -n "$path_pid" ] && taskset -a -p -c 0 "$path_pid" >/dev/null
  start_profile "$1" "udp-round$2"
  output=$(in_client taskset -c 0 timeout $((duration + 20)) sockperf pp -i 198.18.0.1 -p "$udp_port" -t "$duration" -m 64 --full-rtt 2>&1) \
    || { echo "bench: sockperf (UDP) failed on $1" >&2; echo "$output" >&2; return 1; }
  stop_profile
  [ -n "$path_pid" ] && taskset -a -p -c "$all_cpus" "$path_pid" >/dev/null
  record "$1" "$2" udp_pingpong_median_us "$(awk '/percentile 50.000/ {print $NF}' <<<"$output")"
}

measure_connections() { # path round
  local output
  start_profile "$1" "connections-round$2"
  output=$(in_client timeout $((duration + 20)) wrk -t1 -c32 -d"${duration}s" -H "Connection: close" "http://198.18.0.1:$http_port/" 2>&1) \
    || { echo "bench: wrk failed on $1" >&2; echo "$output" >&2; return 1; }
  stop_profile
  record "$1" "$2" connections_per_s "$(awk '/^Requests\/sec:/ {print $2}' <<<"$output")"
  local errors
  errors=$(awk '/Socket errors:/ { gsub(/,/, ""); n += $4 + $6 + $8 + $10 } /Non-2xx/ { n += $NF } END { print n + 0 }' <<<"$output")
  record "$1" "$2" connection_errors "$errors"
}

run_path() { # path round
  local path=$1 round=$2
  make_hosts
  start_servers
  start_path "$path"
  # A diagnostic A/B: conntrack events off in the server's namespace (the kernel datapath's
  # engine then learns no kernel-decided connection, and the kernel builds no event).
  [ -n "$conntrack_events" ] && in_server sysctl -qw net.netfilter.nf_conntrack_events="$conntrack_events"
  measuring bulk1 && measure_bulk "$path" "$round" 1
  measuring bulk4 && measure_bulk "$path" "$round" 4
  measuring bulk6 && measure_bulk "$path" "$round" 1 2001:db8::1 _v6
  measuring pingpong && measure_ping_pong "$path" "$round"
  measuring udp && measure_udp "$path" "$round"
  measuring connections && measure_connections "$path" "$round"
  if [ "${path#vpm}" != "$path" ]; then
    "$VPM_BINARY" stats --json --socket "$work/vpm.sock" >"$work/stats-$path-$round.json" 2>/dev/null || true
  fi
  stop_processes
  delete_hosts
}

started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
echo "bench: $rounds rounds of ${paths[*]}, ${duration}s per measurement"
for round in $(seq "$rounds"); do
  # Alternate: each round starts with the next path.
  count=${#paths[@]}
  for offset in $(seq 0 $((count - 1))); do
    path=${paths[$(( (round - 1 + offset) % count ))]}
    echo "bench: round $round/$rounds: $path"
    run_path "$path" "$round"
  done
done

mkdir -p "$(dirname "$results")"
if [ "$profile" = 1 ]; then
  for data in "$work"/perf-*.data; do
    [ -e "$data" ] || continue
    report="$(dirname "$results")/$(basename "$data" .data).txt"
    { echo "== self time (flat)"
      perf report -i "$data" --no-children --sort dso,symbol --stdio -g none --percent-limit 0.7 2>/dev/null | grep -v '^#' | grep .
      echo "== inclusive time (children)"
      perf report -i "$data" --children --sort symbol --stdio -g none --percent-limit 4 2>/dev/null | grep -v '^#' | grep .
    } >"$report" || true
  done
fi
python3 Benchmarks/bench-report.py --raw "$raw" --out "$results" --started "$started" \
  --rounds "$rounds" --seconds "$duration" --stats "$work" --paths "${paths[@]}"
# The same figures as a chart (each path's ratio to kernel NAT), next to the record.
Benchmarks/bench-chart.sh "$results" "${results%.json}.png" >/dev/null && echo "bench: chart in ${results%.json}.png"
