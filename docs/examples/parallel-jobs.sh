#!/bin/sh
# Parallel test jobs on one host, each with its own redis on 127.0.0.1:6379, as its suite
# expects (docs/instances.md, "Parallel test jobs on one host"). Each job runs under
# `vpm exec --new-aid`: a tenant of its own, made when it starts and gone when it ends.
#
#   parallel-jobs.sh [JOBS]      (default 4)
#
# Needs a running engine (`vpm run`) whose configuration has a tenants: section that lets
# this user make tenants on 6379. VPM_CONFIG and VPM_SOCKET name the configuration and the
# engine's socket (defaults /etc/vpm/vpm.yaml, /run/vpm/vpm.sock); VPM the vpm to run.
# Prints one line per job; exits 1 if any job saw data it did not write.
set -eu
jobs=${1:-4}
vpm=${VPM:-vpm}
config=${VPM_CONFIG:-/etc/vpm/vpm.yaml}
socket=${VPM_SOCKET:-/run/vpm/vpm.sock}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cat > "$work/job.sh" <<'JOB'
# One job: the suite's redis (daemonized, as its set-up would), a marker only this job
# writes, some load, and the check that it reads back its own marker.
redis-server --port 6379 --save "" --appendonly no --daemonize yes --logfile "$1/$VPM_AID.log" --pidfile "$1/$VPM_AID.pid"
i=0
until redis-cli ping >/dev/null 2>&1; do i=$((i + 1)); [ $i -lt 100 ] || { echo "$VPM_AID: redis did not start"; exit 3; }; sleep 0.1; done
redis-cli set marker "$VPM_AID" >/dev/null
redis-benchmark -q -n 1000 -t set,get,incr >/dev/null
seen=$(redis-cli --raw get marker)
redis-cli shutdown nosave >/dev/null 2>&1 || true
if [ "$seen" = "$VPM_AID" ]; then echo "$VPM_AID: its own redis on 6379, its own data"; else echo "$VPM_AID: read '$seen'"; exit 1; fi
JOB

pids=""
for n in $(seq "$jobs"); do
    "$vpm" exec --new-aid --config "$config" --socket "$socket" -- sh "$work/job.sh" "$work" >"$work/job$n.out" 2>&1 &
    pids="$pids $!"
done
failed=0
for pid in $pids; do wait "$pid" || failed=1; done
cat "$work"/job*.out
exit $failed
