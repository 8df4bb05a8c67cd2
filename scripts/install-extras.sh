#!/usr/bin/env bash
# Installs vpm's man page (vpm.8.gz, from the commands' own help: swift-argument-parser's
# generate-manual reads `vpm --experimental-dump-help`) and its bash and zsh completions.
# Used by `make install` and scripts/make-deb.sh.
# Usage: scripts/install-extras.sh BINARY MAN8_DIR BASH_COMPLETIONS_DIR ZSH_COMPLETIONS_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
binary=$1 man8=$2 bash_completions=$3 zsh_completions=$4
install -d "$man8" "$bash_completions" "$zsh_completions"
"$binary" --generate-completion-script bash > "$bash_completions/vpm"
"$binary" --generate-completion-script zsh > "$zsh_completions/_vpm"
build=("${SWIFT:-swift}" build -c release --static-swift-stdlib --product generate-manual --scratch-path .build/install)
"${build[@]}" >/dev/null
manual=$(mktemp -d)
trap 'rm -rf "$manual"' EXIT
"$("${build[@]}" --show-bin-path)/generate-manual" "$binary" --section 8 --authors "the vpm developers" \
  --output-directory "$manual" >/dev/null
gzip -9n -c "$manual/vpm.8" > "$man8/vpm.8.gz"
chmod 0644 "$man8/vpm.8.gz" "$bash_completions/vpm" "$zsh_completions/_vpm"
