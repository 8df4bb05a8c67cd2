#!/bin/sh
# Removes the engine's VPM-* chains and their jump rules (what `vpm run` does on exit and
# `vpm rules remove` does by hand), and the kernel datapath's nft table inet vpm. Safe to
# run when they are already gone.
for tool in iptables ip6tables; do
  for spec in raw:PREROUTING:VPM-PREROUTING raw:OUTPUT:VPM-OUTPUT nat:PREROUTING:VPM-PREROUTING nat:OUTPUT:VPM-OUTPUT mangle:PREROUTING:VPM-PREROUTING mangle:OUTPUT:VPM-OUTPUT filter:INPUT:VPM-INPUT filter:OUTPUT:VPM-OUTPUT; do
    table=${spec%%:*} rest=${spec#*:}
    hook=${rest%%:*} chain=${rest#*:}
    while $tool -w -t "$table" -D "$hook" -j "$chain" 2>/dev/null; do :; done
    $tool -w -t "$table" -F "$chain" 2>/dev/null
    $tool -w -t "$table" -X "$chain" 2>/dev/null
  done
done
nft delete table inet vpm 2>/dev/null
exit 0
