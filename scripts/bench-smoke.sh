#!/usr/bin/env bash
# The benchmarks' smoke runs (part of `make test`, as root), so that no benchmark rots: every
# bench binary `make bench` runs is built through the test profile (not a second release
# build) and run by `cargo test` with SYNAPSE_BENCH_SMOKE=1, its short version of a few
# seconds that prints the same tables and asserts nothing about timings. A run passes when
# it exits 0 and printed its figures (a line the benchmark prints with its table). One line
# per benchmark, `bench-smoke: NAME ok|FAILED`, then `bench smoke: N passed, M failed`; the
# exit status is non-zero when one failed. Each run's output is in target/bench-smoke/NAME.log.
# Each runs as `cargo test --locked --bench NAME` from the workspace root: selecting the
# default members, as `cargo test` does, keeps the features of the dependencies those of
# `make test`'s build, where `-p PACKAGE` would build some of them (and the agent) again.
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
if [ "$(id -u)" != 0 ]; then
  echo "bench-smoke: the agent's benchmarks load eBPF programs: run as root" >&2
fi

# PACKAGE BENCH REGEX: the line that shows the benchmark printed its figures.
benches=(
  "synapse-agent telemetry ^[[:space:]]+max[[:space:]]+-[[:space:]]+[0-9]"
  "synapse-agent gateway ^300 ms-init function: cold invocation"
  "synapse-agent replay ^tract inference of the ONNX model"
  "synapse-hub fleet ^largest fleet measured|^no measured fleet"
  "synapse-hub placement ^gap: mean"
  "synapse-hub aggregation ^[[:space:]]+total[[:space:]]+[0-9]+"
)
mkdir -p target/bench-smoke
passed=0
failed=0
times=()
started=$SECONDS
for entry in "${benches[@]}"; do
  read -r package bench pattern <<<"$entry"
  log=target/bench-smoke/$bench.log
  t=$SECONDS
  echo "== SYNAPSE_BENCH_SMOKE=1 cargo test --locked --bench $bench ($package)" >"$log"
  SYNAPSE_BENCH_SMOKE=1 cargo test --locked --bench "$bench" >>"$log" 2>&1
  status=$?
  times+=("$bench $((SECONDS - t)) s")
  if [ "$status" = 0 ] && grep -Eq "$pattern" "$log"; then
    passed=$((passed + 1))
    echo "bench-smoke: $bench ok"
  else
    failed=$((failed + 1))
    echo "bench-smoke: $bench FAILED"
    echo "    (exit status $status; the end of $log:)"
    tail -n 30 "$log" | sed 's/^/    /'
  fi
done
# Builds included: the first run of a benchmark builds it.
echo "bench-smoke: $((SECONDS - started)) s in all ($(IFS=,; echo "${times[*]}" | sed 's/,/, /g'))"
echo "bench smoke: $passed passed, $failed failed"
[ "$failed" = 0 ]
