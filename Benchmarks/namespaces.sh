# Sourced by the benchmark scripts that make their own server and client namespaces.

# stop_namespaces NS...: stops every process in the namespaces (SIGTERM, then SIGKILL after
# 5 s), then deletes them; quiet about what is already gone.
stop_namespaces() {
  local ns
  for ns in "$@"; do ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null || true; done
  for _ in $(seq 50); do
    local left=""
    for ns in "$@"; do left="$left$(ip netns pids "$ns" 2>/dev/null || true)"; done
    [ -z "$left" ] && break
    sleep 0.1
  done
  for ns in "$@"; do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
  done
}
