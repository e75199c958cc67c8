#!/usr/bin/env bash
# The main job (`make run`): sets up what is missing, builds, and runs the agent on this host
# with the sample configuration (examples/demo-agent.toml): two real HTTP functions behind
# the gateway, each instance in its own cgroup, driven by bursts and pauses so that idle
# instances are retired past their keep-alive and start cold again. The agent prints its live telemetry every 5 s; at the end (DURATION
# seconds, default 60, or Ctrl-C) everything is stopped and a summary printed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. scripts/env.sh
[ "$(id -u)" = 0 ] || { echo "run: the agent loads eBPF programs: run as root" >&2; exit 1; }
cargo build --release --locked -p synapse-agent --bins
bin="$PWD/target/release"
work=$(mktemp -d /tmp/synapse-demo.XXXXXX)
sed -e "s#@STATE@#$work/state#; s#@BIN@#$bin#" examples/demo-agent.toml > "$work/agent.toml"
"$bin/synapse-agent" check-config "$work/agent.toml"

"$bin/synapse-agent" run --config "$work/agent.toml" 2> "$work/agent.log" &
agent=$!
stop() {
  if kill -0 "$agent" 2>/dev/null; then
    kill -TERM "$agent"; wait "$agent" || true
  fi
}
trap 'stop; exit 130' INT TERM
trap stop EXIT

for _ in $(seq 100); do curl -sf 127.0.0.1:9464/healthz >/dev/null && break; sleep 0.1; done
echo "agent running (pid $agent, log $work/agent.log); metrics on http://127.0.0.1:9464/metrics"

duration=${DURATION:-60}
ok=0 failed=0 cold=0
call() {
  local h
  h=$(curl -s -m 15 -o /dev/null -D - -X POST --data "payload" "http://127.0.0.1:8080/v1/functions/$1/invoke") || { failed=$((failed+1)); return; }
  case "$h" in *" 200"*) ok=$((ok+1)) ;; *) failed=$((failed+1)) ;; esac
  case "$h" in *"x-synapse-start: cold"*) cold=$((cold+1)) ;; esac
}
end=$((SECONDS + duration))
while [ $SECONDS -lt $end ]; do
  # thumbnail: 8 s of requests, then 5 s of silence (longer than its 3 s keep-alive).
  if [ $(( SECONDS % 13 )) -lt 8 ]; then call thumbnail; call thumbnail; fi
  call resize
  sleep 0.2
done
sleep 1.5
echo
echo "== summary after ${duration}s: $ok invocations answered ($cold cold), $failed failed =="
curl -sf 127.0.0.1:9464/metrics | awk '
  /^synapse_(invocations|cold_starts|kernel_accepts|idle_memory_mb_seconds)_total\{/ || /^synapse_cold_start_seconds_(sum|count)\{/ || /^synapse_ebpf_events_lost_total/ { print "  " $0 }'
