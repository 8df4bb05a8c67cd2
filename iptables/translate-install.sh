#!/bin/sh
# Installs the rules `vpm translate --install-rules` installs, for operators who manage
# rules themselves:  translate-install.sh QUEUE INITIAL_PORT VIRTUAL_PORT
#
# Everything lives in the engine's own chains in the raw table, which runs before
# conntrack (priority -300): the engine rewrites ports there, and NOTRACK keeps conntrack
# from ever holding a tuple that changes half-way through a flow.
#   VPM-PREROUTING  arriving TCP to the initial port  -> NOTRACK, NFQUEUE
#   VPM-OUTPUT      leaving TCP from the virtual port -> NOTRACK, NFQUEUE
set -eu
[ $# -eq 3 ] || { echo "usage: $0 QUEUE INITIAL_PORT VIRTUAL_PORT" >&2; exit 2; }
queue=$1 initial=$2 virtual=$3

for tool in iptables ip6tables; do
  $tool -w -t raw -N VPM-PREROUTING
  $tool -w -t raw -N VPM-OUTPUT
  $tool -w -t raw -A VPM-PREROUTING -p tcp --dport "$initial" -j CT --notrack
  $tool -w -t raw -A VPM-PREROUTING -p tcp --dport "$initial" -j NFQUEUE --queue-num "$queue"
  $tool -w -t raw -A VPM-OUTPUT -p tcp --sport "$virtual" -j CT --notrack
  $tool -w -t raw -A VPM-OUTPUT -p tcp --sport "$virtual" -j NFQUEUE --queue-num "$queue"
  $tool -w -t raw -I PREROUTING 1 -j VPM-PREROUTING
  $tool -w -t raw -I OUTPUT 1 -j VPM-OUTPUT
done
