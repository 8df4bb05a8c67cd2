#!/usr/bin/env bash
# Prints the command-line reference (docs/cli.md) from the commands' own help, so it cannot
# drift from the code: scripts/cli-reference.sh [PATH_TO_VPM] > docs/cli.md
# A test (CommandLineTests.testCLIReferenceIsCurrent) fails when docs/cli.md is stale.
set -euo pipefail
vpm=${1:-"$(dirname "$0")/../.build/debug/vpm"}
export COLUMNS=100
commands=$("$vpm" --help | awk '/^SUBCOMMANDS:/ {on = 1; next} on && /^  [a-z]/ {print $1}')
echo "# vpm command-line reference"
echo
echo "Generated from \`vpm help\` by \`scripts/cli-reference.sh\`; a test fails when this page"
echo "and the code disagree. Exit codes: 0 ok, 1 error (\`vpm: what happened and what to do\`),"
echo "2 bad usage."
echo
echo '## vpm'
echo
echo '```'
"$vpm" --help
echo '```'
for command in $commands; do
  echo
  echo "## vpm $command"
  echo
  echo '```'
  "$vpm" help "$command"
  echo '```'
done
