#!/bin/sh
# Removes the engine's VPM-* chains and their jump rules (what the engine does on exit).
# Safe to run when they are already gone.
for tool in iptables ip6tables; do
  for pair in PREROUTING:VPM-PREROUTING OUTPUT:VPM-OUTPUT; do
    hook=${pair%%:*} chain=${pair#*:}
    while $tool -w -t raw -D "$hook" -j "$chain" 2>/dev/null; do :; done
    $tool -w -t raw -F "$chain" 2>/dev/null
    $tool -w -t raw -X "$chain" 2>/dev/null
  done
done
exit 0
