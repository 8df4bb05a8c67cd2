#!/usr/bin/env bash
# Installs what vpm needs from Debian when it is missing: the netfilter libraries it links,
# and the real tools its demo and tests drive (iptables, nft, conntrack, iproute2, socat, ethtool,
# tcpdump, etcd, servers that daemonize: redis, memcached, postgresql; systemd-nspawn for a real
# PID 1), and what `make deb` and its check use (dpkg-deb, gzip, systemd-analyze).
set -euo pipefail

packages=(
  pkg-config libnetfilter-queue-dev libnfnetlink-dev libmnl-dev libbpf-dev   # build
  iptables iproute2 kmod nftables conntrack                        # run (conntrack: to look)
  socat ethtool coreutils util-linux nginx-light python3 curl tcpdump caddy   # demo and tests (util-linux: nsenter)
  dnsmasq-base                                                     # tests: a real UDP server (DNS)
  redis-server redis-tools memcached postgresql                    # tests: daemons as their docs start them
  systemd-container                                                # tests: systemd as PID 1 (systemd-nspawn)
  etcd-server etcd-client                                          # tests: the fleet's directory (etcd 3.4)
  dpkg gzip systemd                                                # make deb and its check (systemd-analyze)
)

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "vpm: missing Debian packages: ${missing[*]}" >&2
  echo "vpm: install them with: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
echo "vpm: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# Servers such as nginx must not start as system services on install: the demo and the
# tests start their own copies inside network namespaces. policy-rc.d says so to dpkg.
policy=/usr/sbin/policy-rc.d
made_policy=false
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && made_policy=true
fi
trap '$made_policy && rm -f "$policy"' EXIT
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
