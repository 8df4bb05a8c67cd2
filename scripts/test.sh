#!/usr/bin/env bash
# Runs every test and says how many were skipped and why. Tests that need root make their
# own network namespaces (vpmt-*); a run that was killed may have left some, so sweep first.
set -uo pipefail
cd "$(dirname "$0")/.."

sweep() {
  for namespace in $(ip netns list 2>/dev/null | awk '/^vpmt-/ {print $1}'); do
    ip netns pids "$namespace" 2>/dev/null | xargs -r kill -9 2>/dev/null
    ip netns delete "$namespace" 2>/dev/null
  done
}
[ "$(id -u)" -eq 0 ] && sweep

# The release build that the make install and make deb checks below need (8 to 14 minutes
# on two cores) starts now, with the smallest CPU share: it takes what the debug build and
# the end-to-end tests, which mostly wait on the network and on timers, leave idle. A cgroup
# does that, not nice: swift-build starts its compilers at nice 0 whatever its own value.
background_group=""
low_share() {
  if [ -d /sys/fs/cgroup/cpu ] && [ -w /sys/fs/cgroup/cpu ]; then
    background_group=/sys/fs/cgroup/cpu/vpm-test-release
    mkdir -p "$background_group" && echo 2 > "$background_group/cpu.shares"
  elif grep -qw cpu /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
    echo +cpu > /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null
    background_group=/sys/fs/cgroup/vpm-test-release
    mkdir -p "$background_group" && echo 1 > "$background_group/cpu.weight"
  fi 2>/dev/null || background_group=""
  if [ -n "$background_group" ]; then
    echo "$BASHPID" > "$background_group/cgroup.procs" 2>/dev/null || background_group=""
  fi
  [ -n "$background_group" ] || echo "(no cgroup for the release build: it runs beside the tests at the same priority)"
}
# Resolved first, so the two builds do not both write Package.resolved.
swift package resolve || exit 1
release_log=$(mktemp)
fuzz_build_log=$(mktemp)
(
  low_share
  make --no-print-directory install-build || exit 1
  # Then the fuzz harnesses (libFuzzer + ASan), for the fuzz step at the end.
  Fuzz/run.sh --build-only >"$fuzz_build_log" 2>&1
  echo $? >"$fuzz_build_log.status"
) >"$release_log" 2>&1 &
release_build=$!

swift build --build-tests || { kill "$release_build" 2>/dev/null; exit 1; }
export VPM_BINARY="$(swift build --show-bin-path)/vpm"
log=$(mktemp)
swift test --skip-build 2>&1 | tee "$log"
status=${PIPESTATUS[0]}

# The end-to-end tests of the engine, vpm exec and the cooperative/local modes once more on
# each other datapath (the first pass ran the default, socket; EngineRun passes
# VPM_TEST_DATAPATH to `vpm run --datapath`). KernelRestartTests, which picks the kernel
# datapath itself, ran in the first pass. Each pass's log is named by its datapath.
datapath_suites='EndToEndTests\.(SourceRoutingTests|ExecTests|DaemonTests|TenantTests|CooperativeTests|MetricsTests|FlowWatchTests|ServiceTests|MalformedPacketTests|RestartTests|UDPTests)'
other_datapaths=(userspace kernel)
declare -A pass_log
for datapath in "${other_datapaths[@]}"; do
  echo
  echo "== end-to-end tests again with --datapath $datapath"
  pass_log[$datapath]=$(mktemp)
  VPM_TEST_DATAPATH=$datapath swift test --skip-build --filter "$datapath_suites" 2>&1 | tee "${pass_log[$datapath]}"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
done

[ "$(id -u)" -eq 0 ] && sweep

# What `make install` ships: a release build (whole-module optimization has broken builds
# that debug builds accepted) with the Swift runtime linked in, staged under a temporary
# DESTDIR with another PREFIX. The installed vpm must run a program under `vpm exec` and
# must not need the toolchain's libraries.
echo
echo "== make install (release build, staged)"
wait "$release_build" || { tail -30 "$release_log"; echo "make install: the release build failed (above)"; status=1; }
rm -f "$release_log"
rmdir /sys/fs/cgroup/cpu/vpm-test-release /sys/fs/cgroup/vpm-test-release 2>/dev/null
stage=$(realpath "$(mktemp -d)")
if make --no-print-directory install DESTDIR="$stage" PREFIX=/opt/vpm >"$stage.log" 2>&1; then
  "$VPM_BINARY" demo --print-config >"$stage/demo.yaml" && chmod 600 "$stage/demo.yaml"
  exec_output=$("$stage/opt/vpm/bin/vpm" exec --aid acme --config "$stage/demo.yaml" \
    --socket "$stage/none.sock" -- sh -c 'echo "instance of $0"; exit 7' vpm-test 2>&1)
  exec_status=$?
  if [ "$exec_output" = "instance of vpm-test" ] && [ "$exec_status" -eq 7 ] \
     && "$stage/opt/vpm/bin/vpm" check-config "$stage/demo.yaml" >/dev/null \
     && ! ldd "$stage/opt/vpm/bin/vpm" | grep -q libswift \
     && zcat "$stage/opt/vpm/share/man/man8/vpm.8.gz" | grep -q "vpm" \
     && grep -q "vpm" "$stage/opt/vpm/share/bash-completion/completions/vpm" \
     && grep -q "vpm" "$stage/opt/vpm/share/zsh/site-functions/_vpm"; then
    echo "make install: ok ($stage/opt/vpm/bin/vpm runs a program under vpm exec; man page and completions installed)"
  else
    echo "make install: the installed vpm does not work, or its man page or completions are missing: vpm exec said '$exec_output' (status $exec_status); installed:"
    find "$stage" -type f
    ldd "$stage/opt/vpm/bin/vpm"
    status=1
  fi
else
  tail -30 "$stage.log"
  echo "make install: failed (above)"
  status=1
fi
rm -rf "$stage" "$stage.log"

# What `make deb` ships (root only: it installs the package on this machine, checks it and
# purges it): vpm --version, check-config of the example, the unit under systemd-analyze
# verify, the man page and completions present; after purge, none of its files is left.
if [ "$(id -u)" -eq 0 ]; then
  echo
  echo "== make deb (installed here, checked, purged)"
  debdir=$(realpath "$(mktemp -d)")
  if dpkg -s vpm >/dev/null 2>&1; then
    echo "make deb: a vpm package is already installed on this machine; not replacing it (remove it to run this check)"
    status=1
  elif scripts/make-deb.sh "$debdir" >"$debdir.log" 2>&1; then
    package=$(tail -1 "$debdir.log")
    files=$(dpkg-deb -c "$package" | awk '$1 !~ /^d/ {sub(/^\./, "", $6); print $6}')
    problems=""
    installed_here=0
    if ! dpkg -i "$package" >"$debdir.install.log" 2>&1; then
      problems="$problems; dpkg -i failed: $(tail -3 "$debdir.install.log")"
    else
      installed_here=1
      [ "$(/usr/bin/vpm --version)" = "$(dpkg-deb -f "$package" Version)" ] || problems="$problems; vpm --version differs from the package's"
      /usr/bin/vpm check-config /etc/vpm/vpm.yaml >/dev/null || problems="$problems; check-config of /etc/vpm/vpm.yaml failed"
      verify=$(systemd-analyze verify /lib/systemd/system/vpm.service 2>&1) || problems="$problems; systemd-analyze verify: $verify"
      verify=$(systemd-analyze verify vpm-exec@check.service 2>&1) || problems="$problems; systemd-analyze verify vpm-exec@: $verify"
      zcat /usr/share/man/man8/vpm.8.gz | grep -q "vpm" || problems="$problems; no man page"
      grep -q "vpm" /usr/share/bash-completion/completions/vpm || problems="$problems; no bash completion"
      dpkg --purge vpm >>"$debdir.install.log" 2>&1 || problems="$problems; dpkg --purge failed"
      for file in $files; do [ -e "$file" ] && problems="$problems; $file left after purge"; done
      [ -e /etc/vpm ] && problems="$problems; /etc/vpm left after purge"
    fi
    if [ -z "$problems" ]; then
      echo "make deb: ok ($(basename "$package"): installed, checked, purged without a trace)"
    else
      echo "make deb: ${problems#; }"
      status=1
    fi
  else
    tail -30 "$debdir.log"
    echo "make deb: failed (above)"
    status=1
  fi
  # A failed check above must not leave the package installed.
  [ "${installed_here:-0}" -eq 1 ] && dpkg -s vpm >/dev/null 2>&1 && dpkg --purge vpm >/dev/null 2>&1
  rm -rf "$debdir" "$debdir.log" "$debdir.install.log"
fi

# The fuzz harnesses (libFuzzer + ASan) from the committed corpus, a short fixed time each:
# a parser or decoder change that crashes on a known input, or on one found in 20 s, fails.
echo
echo "== make fuzz, ${CI_FUZZ_SECONDS:-20} s per harness"
if [ "$(cat "$fuzz_build_log.status" 2>/dev/null)" != 0 ]; then
  tail -40 "$fuzz_build_log"
  echo "make fuzz: the harnesses were not built (above; none if the release build failed first)"
  status=1
elif FUZZ_PREBUILT=1 Fuzz/run.sh "${CI_FUZZ_SECONDS:-20}" >"$log.fuzz" 2>&1; then
  echo "make fuzz: ok ($(grep -c ': no crash; corpus' "$log.fuzz") harnesses, no crash)"
else
  tail -60 "$log.fuzz"
  echo "make fuzz: failed (above)"
  status=1
fi
rm -f "$log.fuzz" "$fuzz_build_log" "$fuzz_build_log.status"

summary=$(grep -E "^Test Suite 'All tests' (passed|failed)" -A1 "$log" | grep -E "Executed [0-9]+ tests?" | tail -1)
echo
echo "make test: ${summary:-no XCTest summary found}"
for datapath in "${other_datapaths[@]}"; do
  pass_summary=$(grep -E "^Test Suite 'Selected tests' (passed|failed)" -A1 "${pass_log[$datapath]}" | grep -E "Executed [0-9]+ tests?" | tail -1)
  cat "${pass_log[$datapath]}" >> "$log"
  echo "make test ($datapath datapath): ${pass_summary:-no XCTest summary found}"
  if [ "$(id -u)" -eq 0 ] && ! echo "$pass_summary" | grep -qE "Executed [1-9][0-9]* tests?"; then
    echo "make test: the $datapath datapath pass ran no test (did the --filter stop matching?)"
    status=1
  fi
done
skipped=$(grep -cE "^Test Case .* skipped" "$log")
if [ "$skipped" -gt 0 ]; then
  echo "make test: $skipped test(s) skipped:"
  grep -E "Test skipped - " "$log" | sed -E 's/^.*: ([A-Za-z]+\.[A-Za-z]+) : Test skipped - /  \1: /' | sort -u
  if [ "$(id -u)" -eq 0 ]; then
    echo "make test: tests were skipped while running as root: that is a failure"
    status=1
  fi
fi
rm -f "$log" "${pass_log[@]}"
exit "$status"
