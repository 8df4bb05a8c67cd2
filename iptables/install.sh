#!/bin/sh
# Installs exactly the rules `vpm run` installs (and `vpm rules print` prints), for
# operators who manage rules themselves and run the engine with `vpm run --no-rules`:
#
#   install.sh QUEUE LOW:HIGH PORT/PROTO... [-- VIRTUAL/PROTO...]
#   e.g.  install.sh 0 20000:20999 9000/tcp 5353/udp -- 20017/tcp
#
# QUEUE is the config's `queue`, LOW:HIGH its `virtual-ports`, PORT/PROTO its `ports`, and
# after -- the virtual ports of the instances the configuration itself names.
# Everything lives in the engine's own chains, jumped to from the built-in hooks:
#   raw    VPM-PREROUTING  drop direct traffic to the virtual ports (except from lo);
#                          arriving traffic to an initial port (not on lo) -> NOTRACK, NFQUEUE
#   raw    VPM-OUTPUT      traffic leaving a virtual port (not to lo) -> NOTRACK, NFQUEUE
#   filter VPM-INPUT       packets the engine refused (mark 0x76706d01) -> REJECT;
#                          to a virtual port over lo without a local-mode decision's mark
#                          (0x5xxxxxxx) -> REJECT; new connections to a virtual port whose
#                          socket the engine did not bind (SO_MARK 0x76706d02) -> REJECT
#                          (a SYN that finds no full socket, only TIME_WAIT, goes on)
# The raw table runs before conntrack, so conntrack never holds a half-rewritten tuple.
# Remove with iptables/remove.sh.
set -eu
[ $# -ge 3 ] || { echo "usage: $0 QUEUE LOW:HIGH PORT/PROTO... [-- VIRTUAL/PROTO...]" >&2; exit 2; }
queue=$1 range=$2
shift 2
ports="" fixed="" after=false
for spec in "$@"; do
  if [ "$spec" = "--" ]; then after=true; elif $after; then fixed="$fixed $spec"; else ports="$ports $spec"; fi
done
set -- $ports

transports=""
for spec in "$@"; do
  case "$spec" in */udp) t=udp ;; */tcp|*[0-9]) t=tcp ;; *) echo "bad port: $spec" >&2; exit 2 ;; esac
  case " $transports " in *" $t "*) ;; *) transports="$transports $t" ;; esac
done
# The engine orders transports tcp before udp.
ordered=""
for t in tcp udp; do case " $transports " in *" $t "*) ordered="$ordered $t" ;; esac; done

for tool in iptables ip6tables; do
  $tool -w -t raw -N VPM-PREROUTING
  $tool -w -t raw -N VPM-OUTPUT
  $tool -w -t filter -N VPM-INPUT
  for t in $ordered; do
    $tool -w -t raw -A VPM-PREROUTING ! -i lo -p "$t" --dport "$range" -j DROP
  done
  for spec in "$@"; do
    port=${spec%/*}
    case "$spec" in */udp) t=udp ;; *) t=tcp ;; esac
    $tool -w -t raw -A VPM-PREROUTING ! -i lo -p "$t" --dport "$port" -j CT --notrack
    $tool -w -t raw -A VPM-PREROUTING ! -i lo -p "$t" --dport "$port" -j NFQUEUE --queue-num "$queue"
  done
  for t in $ordered; do
    $tool -w -t raw -A VPM-OUTPUT ! -o lo -p "$t" --sport "$range" -j CT --notrack
    $tool -w -t raw -A VPM-OUTPUT ! -o lo -p "$t" --sport "$range" -j NFQUEUE --queue-num "$queue"
  done
  for t in $ordered; do
    if [ "$t" = tcp ]; then
      $tool -w -t filter -A VPM-INPUT -p tcp -m mark --mark 0x76706d01 -j REJECT --reject-with tcp-reset
    else
      $tool -w -t filter -A VPM-INPUT -p udp -m mark --mark 0x76706d01 -j REJECT
    fi
  done
  for t in $ordered; do
    if [ "$t" = tcp ]; then reject="-j REJECT --reject-with tcp-reset" syn="--syn"; else reject="-j REJECT" syn=""; fi
    $tool -w -t filter -A VPM-INPUT -i lo -p "$t" --dport "$range" -m mark ! --mark 0x50000000/0xf0000000 $reject
  done
  for spec in $fixed; do
    case "$spec" in */udp) t=udp ;; *) t=tcp ;; esac
    $tool -w -t filter -A VPM-INPUT -p "$t" --dport "${spec%/*}" -j RETURN
  done
  for t in $ordered; do
    if [ "$t" = tcp ]; then reject="-j REJECT --reject-with tcp-reset" syn="--syn"; else reject="-j REJECT" syn=""; fi
    # 0x76706d03 stays when no full socket is found (TIME_WAIT, a request socket): the kernel answers.
    $tool -w -t filter -A VPM-INPUT -p "$t" --dport "$range" $syn -j MARK --set-xmark 0x76706d03/0xffffffff
    $tool -w -t filter -A VPM-INPUT -p "$t" --dport "$range" $syn -m socket --nowildcard --restore-skmark
    $tool -w -t filter -A VPM-INPUT -p "$t" --dport "$range" $syn -m mark ! --mark 0x76706d02 -m mark ! --mark 0x76706d03 $reject
  done
  $tool -w -t raw -I PREROUTING 1 -j VPM-PREROUTING
  $tool -w -t raw -I OUTPUT 1 -j VPM-OUTPUT
  $tool -w -t filter -I INPUT 1 -j VPM-INPUT
done
