#!/usr/bin/env bash
# Builds vpm_VERSION_ARCH.deb with dpkg-deb: the release binary (Swift runtime linked in),
# the systemd unit, an example /etc/vpm/vpm.yaml (a conffile: upgrades keep the operator's),
# the man page (swift-argument-parser's generate-manual) and bash and zsh completions.
# Usage: scripts/make-deb.sh [OUTPUT_DIRECTORY]   (default: the current directory)
set -euo pipefail
cd "$(dirname "$0")/.."
output=$(realpath "${1:-.}")
build=(swift build -c release --static-swift-stdlib --product vpm --scratch-path .build/install)
"${build[@]}"
binary="$("${build[@]}" --show-bin-path)/vpm"
version=$("$binary" --version)
architecture=$(dpkg --print-architecture)
stage=$(mktemp -d)
chmod 0755 "$stage"
trap 'rm -rf "$stage"' EXIT

install -D -s -m 0755 "$binary" "$stage/usr/bin/vpm"
install -d "$stage/lib/systemd/system"
sed 's|@BINDIR@|/usr/bin|g' packaging/vpm.service.in > "$stage/lib/systemd/system/vpm.service"
sed 's|@BINDIR@|/usr/bin|g' 'packaging/vpm-exec@.service.in' > "$stage/lib/systemd/system/vpm-exec@.service"
chmod 0644 "$stage/lib/systemd/system/vpm.service" "$stage/lib/systemd/system/vpm-exec@.service"
install -D -m 0644 packaging/vpm.yaml "$stage/etc/vpm/vpm.yaml"
scripts/install-extras.sh "$binary" "$stage/usr/share/man/man8" "$stage/usr/share/bash-completion/completions" \
  "$stage/usr/share/zsh/vendor-completions"
install -D -m 0644 README.md "$stage/usr/share/doc/vpm/README.md"

install -d "$stage/DEBIAN"
cat > "$stage/DEBIAN/control" <<CONTROL
Package: vpm
Version: $version
Architecture: $architecture
Maintainer: vpm developers <vpm@localhost>
Depends: libnetfilter-queue1, libnfnetlink0, libmnl0, libbpf1, iptables, nftables
Section: net
Priority: optional
Installed-Size: $(du -sk "$stage" | cut -f1)
Homepage: https://github.com/vpm/vpm
Description: virtual port multiplexer: many instances of a program share one port
 vpm lets several instances of a server that insists on one port (say 9000) run
 on one host: each believes it owns the port, clients keep dialing it, and an
 engine on netfilter NFQUEUE routes each connection to its tenant's instance.
CONTROL
echo /etc/vpm/vpm.yaml > "$stage/DEBIAN/conffiles"
cat > "$stage/DEBIAN/postinst" <<'SCRIPT'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
SCRIPT
cat > "$stage/DEBIAN/prerm" <<'SCRIPT'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then systemctl stop vpm.service 2>/dev/null || true; fi
SCRIPT
cat > "$stage/DEBIAN/postrm" <<'SCRIPT'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
if [ "$1" = purge ]; then rmdir /etc/vpm 2>/dev/null || true; fi
SCRIPT
chmod 0755 "$stage/DEBIAN/postinst" "$stage/DEBIAN/prerm" "$stage/DEBIAN/postrm"
package="$output/vpm_${version}_${architecture}.deb"
dpkg-deb --root-owner-group --build "$stage" "$package" >/dev/null
echo "$package"
