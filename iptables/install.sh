#!/bin/sh
# Installs exactly the rules `vpm run` installs (and `vpm rules print` prints), for
# operators who manage rules themselves and run the engine with `vpm run --no-rules`:
#
#   install.sh QUEUE[:LAST] LOW:HIGH PORT/PROTO... [-- VIRTUAL/PROTO...]
#   e.g.  install.sh 0:1 20000:20999 9000/tcp 5353/udp -- 20017/tcp
#
# QUEUE is the config's `queue` and LAST its `queue + queues - 1` (`vpm run` logs the
# range it binds as `queue=0-1`, which is accepted too; set `queues:` in the configuration
# when you install rules yourself, as `auto` depends on the CPUs the engine may use),
# LOW:HIGH its `virtual-ports`, PORT/PROTO its `ports`, and after -- the virtual ports of
# the instances the configuration itself names.
# Everything lives in the engine's own chains, jumped to from the built-in hooks:
#   raw    VPM-PREROUTING  drop direct traffic to the virtual ports (except from lo);
#                          arriving traffic to an initial port (not on lo) -> NOTRACK, NFQUEUE
#   raw    VPM-OUTPUT      traffic leaving a virtual port (not to lo) -> NOTRACK, NFQUEUE
#                          (several queues: the client port's bits 1-3 pick one, by -m u32)
#   filter VPM-INPUT       packets the engine refused (mark 0x76706d01) -> REJECT;
#                          to a virtual port over lo without a local-mode decision's mark
#                          (0x5xxxxxxx) -> REJECT; new connections to a virtual port whose
#                          socket the engine did not bind (SO_MARK 0x76706d02) -> REJECT
#                          (a SYN that finds no full socket, only TIME_WAIT, goes on)
# The raw table runs before conntrack, so conntrack never holds a half-rewritten tuple.
# Remove with iptables/remove.sh.
set -eu
[ $# -ge 3 ] || { echo "usage: $0 QUEUE[:LAST] LOW:HIGH PORT/PROTO... [-- VIRTUAL/PROTO...]" >&2; exit 2; }
queues=$(echo "$1" | tr - :) range=$2
shift 2
first=${queues%:*} last=${queues#*:}
for q in "$first" "$last"; do
  # Decimal, no leading zero (sh arithmetic would read 010 as octal).
  case "$q" in ''|*[!0-9]*|0?*) echo "bad queue range: '$queues' (QUEUE or QUEUE:LAST, 0-65535)" >&2; exit 2 ;; esac
done
count=$((last - first + 1))
[ "$count" -ge 1 ] && [ "$last" -le 65535 ] || { echo "bad queue range: '$queues' (QUEUE:LAST with QUEUE <= LAST <= 65535)" >&2; exit 2; }
# As the engine's RuleSet.QueueTargets: the client port's bits 1 and up pick one of
# `buckets` (a power of two, at most 8), each bucket its share of the queues.
buckets=1
while [ $((buckets * 2)) -le "$count" ] && [ $((buckets * 2)) -le 8 ]; do buckets=$((buckets * 2)); done
# queue_rules TOOL TABLE CHAIN SIDE PROTO MATCH...: queue what MATCH matches; SIDE says
# which port is the client's (source on the way in, destination on the way back).
# (sh has no local variables: every name here starts with qr_.)
queue_rules() {
  qr_tool=$1 qr_table=$2 qr_chain=$3 qr_side=$4 qr_proto=$5
  shift 5
  qr_b=0
  while [ $qr_b -lt $buckets ]; do
    qr_lo=$((first + qr_b * count / buckets)) qr_hi=$((first + (qr_b + 1) * count / buckets - 1))
    if [ $qr_lo -eq $qr_hi ]; then qr_target="--queue-num $qr_lo"; else qr_target="--queue-balance $qr_lo:$qr_hi"; fi
    if [ $qr_b -lt $((buckets - 1)) ]; then
      if [ "$qr_side" = source ]; then qr_shift=17; else qr_shift=1; fi
      qr_bits=">>$qr_shift&0x$(printf %x $((buckets - 1)))=0x$(printf %x $qr_b)"
      if [ "$qr_tool" = iptables ]; then
        qr_u32="0>>22&0x3C@0$qr_bits"
      else
        if [ "$qr_proto" = udp ]; then qr_next=11; else qr_next=6; fi
        qr_u32="4>>8&0xFF=0x$qr_next&&40$qr_bits"
      fi
      $qr_tool -w -t "$qr_table" -A "$qr_chain" "$@" -m u32 --u32 "$qr_u32" -j NFQUEUE $qr_target
    else
      $qr_tool -w -t "$qr_table" -A "$qr_chain" "$@" -j NFQUEUE $qr_target
    fi
    qr_b=$((qr_b + 1))
  done
}
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
    queue_rules $tool raw VPM-PREROUTING source "$t" ! -i lo -p "$t" --dport "$port"
  done
  for t in $ordered; do
    $tool -w -t raw -A VPM-OUTPUT ! -o lo -p "$t" --sport "$range" -j CT --notrack
    queue_rules $tool raw VPM-OUTPUT destination "$t" ! -o lo -p "$t" --sport "$range"
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
