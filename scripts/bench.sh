#!/usr/bin/env bash
# The benchmark command (`make bench`, as root): sets up what is missing (Debian's nginx for
# the gateway benchmark's comparison included), then runs every benchmark the README quotes,
# one after the other (they measure; two at once would share the cores): the agent's
# telemetry, gateway and replay, the hub's fleet, placement and aggregation. Each prints its
# own figures. Every benchmark runs even when an earlier one failed; the last line counts them,
# `bench: N passed, M failed`, and the exit status is non-zero when one failed.
# Each runs as `cargo bench --locked --bench NAME` from the workspace root: with the default
# members selected, the six share one build of the dependencies (`-p PACKAGE` would build some
# of them again for each package's features).
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || { echo "bench: setup failed" >&2; exit 1; }
. scripts/env.sh

benches=(
  "synapse-agent telemetry"
  "synapse-agent gateway"
  "synapse-agent replay"
  "synapse-hub fleet"
  "synapse-hub placement"
  "synapse-hub aggregation"
)
passed=0
failed=()
for entry in "${benches[@]}"; do
  read -r package bench <<<"$entry"
  echo "== cargo bench --locked --bench $bench ($package)"
  started=$SECONDS
  if cargo bench --locked --bench "$bench"; then
    passed=$((passed + 1))
    echo "== $bench: done in $((SECONDS - started)) s"
  else
    failed+=("$bench")
    echo "== $bench: FAILED after $((SECONDS - started)) s"
  fi
  echo
done
[ ${#failed[@]} = 0 ] || echo "bench: failed: ${failed[*]}" >&2
echo "bench: $passed passed, ${#failed[@]} failed"
[ ${#failed[@]} = 0 ]
