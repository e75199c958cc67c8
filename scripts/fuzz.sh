#!/usr/bin/env bash
# Fuzzes SynapseStream's parsers of untrusted input with cargo-fuzz (libFuzzer, AddressSanitizer,
# nightly toolchain): the link's frame codec, the gateway's request heads and instance answers,
# the agent's and the hub's configuration files, the ONNX model loader (fuzz/README.md says
# what each target checks).
#
#   scripts/fuzz.sh [TARGET...]           each target for FUZZ_SECONDS (default 600) of fuzzing
#   scripts/fuzz.sh --smoke [TARGET...]   each target over its committed corpus only, once
#                                         (part of `make test`)
#
# FUZZ_JOBS (default 1) targets run at once, each on one core; FUZZ_TIMEOUT (default 20) is
# the seconds one input may take before it counts as a hang, FUZZ_RSS_MB (default 4096) the
# memory a target may hold. Installs cargo-fuzz once (and what the agent's build needs, through
# setup.sh), builds every target, then prints per target its executions, executions per
# second and crashes, and last `fuzz: N passed, M failed` (`fuzz-smoke: ...` in smoke mode);
# the exit status is non-zero when a target found a crash or did not build.
#
# The committed seeds are in fuzz/corpus/TARGET/ and are only read; what a run discovers goes to
# fuzz/target/corpus/TARGET/ (kept from run to run), crashing inputs to fuzz/artifacts/TARGET/,
# and each run's libFuzzer output to fuzz/target/logs/TARGET.log (TARGET.smoke.log).
set -uo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2
ALL_TARGETS=(frame_codec gateway_request gateway_answer agent_config hub_config onnx_model)
# Build settings of every cargo-fuzz command here: the same flags keep the build cached.
BUILD_FLAGS=(--codegen-units 16)

smoke=no
targets=()
for arg in "$@"; do
  case "$arg" in
    --smoke) smoke=yes ;;
    -h | --help)
      sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *) targets+=("$arg") ;;
  esac
done
[ ${#targets[@]} -gt 0 ] || targets=("${ALL_TARGETS[@]}")
seconds=${FUZZ_SECONDS:-600}
jobs=${FUZZ_JOBS:-1}
label=fuzz
suffix=
# A smoke run keeps its own logs, so one next to a long run leaves the long run's alone.
[ "$smoke" = no ] || { label=fuzz-smoke; suffix=.smoke; }
say() { printf '%s: %s\n' "$label" "$*"; }

# The eBPF build of the agent needs nightly rust-src and bpf-linker (setup.sh, idempotent).
bash scripts/setup.sh || { echo "$label: 0 passed, ${#targets[@]} failed"; exit 1; }
. scripts/env.sh
if ! cargo fuzz --version >/dev/null 2>&1; then
  say "installing cargo-fuzz $CARGO_FUZZ_VERSION (once, about a minute)"
  cargo install --locked --quiet "cargo-fuzz@$CARGO_FUZZ_VERSION" ||
    { echo "$label: 0 passed, ${#targets[@]} failed"; exit 1; }
fi

# Seeds that are files the project ships: refreshed, so the corpus follows them.
seed() { mkdir -p "fuzz/corpus/$1" && cp "$2" "fuzz/corpus/$1/$3"; }
seed agent_config examples/demo-agent.toml examples-demo-agent.toml
seed agent_config packaging/agent.toml packaging-agent.toml
seed hub_config hub/hub.example.toml hub-example.toml
seed onnx_model agent/src/policy/default_forecaster.onnx default_forecaster.onnx

mkdir -p fuzz/target/logs
say "building ${#ALL_TARGETS[@]} targets (cargo +nightly fuzz build; the first build takes a while)"
if ! (cd fuzz && cargo +nightly fuzz build "${BUILD_FLAGS[@]}") >fuzz/target/logs/build.log 2>&1; then
  tail -n 30 fuzz/target/logs/build.log >&2
  say "the fuzz targets did not build (fuzz/target/logs/build.log)"
  echo "$label: 0 passed, ${#targets[@]} failed"
  exit 1
fi
bin=fuzz/target/x86_64-unknown-linux-gnu/release

# run TARGET: one libFuzzer run; its figures go to fuzz/target/logs/TARGET.result.
run() {
  local t=$1 log=fuzz/target/logs/$1$suffix.log artifacts=fuzz/artifacts/$1/ work=fuzz/target/corpus/$1
  mkdir -p "$artifacts" "$work"
  local before
  before=$(ls "$artifacts" | wc -l)
  local args=(-print_final_stats=1 -timeout="${FUZZ_TIMEOUT:-20}" -rss_limit_mb="${FUZZ_RSS_MB:-4096}"
    -artifact_prefix="$artifacts")
  local dirs=("$work" "fuzz/corpus/$t")
  if [ "$smoke" = yes ]; then
    # Every committed input once; nothing new is written.
    args+=(-runs=0)
    dirs=("fuzz/corpus/$t")
  else
    args+=(-max_total_time="$seconds")
  fi
  local started=$SECONDS status
  "$bin/$t" "${args[@]}" "${dirs[@]}" >"$log" 2>&1
  status=$?
  local execs rate crashes
  execs=$(awk '/^stat::number_of_executed_units/ { print $NF }' "$log" | tail -n 1)
  rate=$(awk '/^stat::average_exec_per_sec/ { print $NF }' "$log" | tail -n 1)
  crashes=$(($(ls "$artifacts" | wc -l) - before))
  # A run that died without its statistics (a crash) still counts the inputs it ran.
  [ -n "$execs" ] || execs=$(grep -oE '^#[0-9]+' "$log" | tail -n 1 | tr -d '#')
  printf '%s %s %s %s %s\n' "$status" "${execs:-0}" "${rate:-0}" "$crashes" \
    "$((SECONDS - started))" >"fuzz/target/logs/$t$suffix.result"
}

say "running ${#targets[@]} targets, $jobs at a time, $([ "$smoke" = yes ] && echo "over their corpus" || echo "$seconds s each")"
running=0
for t in "${targets[@]}"; do
  if [ ! -x "$bin/$t" ]; then
    printf '1 0 0 0 0\n' >"fuzz/target/logs/$t$suffix.result"
    say "$t: no such target (${ALL_TARGETS[*]})"
    continue
  fi
  run "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then
    wait -n
    running=$((running - 1))
  fi
done
wait

passed=0
failed=0
for t in "${targets[@]}"; do
  read -r status execs rate crashes took <"fuzz/target/logs/$t$suffix.result"
  corpus=$(ls "fuzz/target/corpus/$t" 2>/dev/null | wc -l)
  line="$t: $execs executions, $rate exec/s, $crashes crashes ($took s; corpus $(ls "fuzz/corpus/$t" | wc -l) committed + $corpus found)"
  if [ "$status" = 0 ] && [ "$crashes" = 0 ]; then
    passed=$((passed + 1))
    say "$line"
  else
    failed=$((failed + 1))
    say "$line FAILED (exit $status): fuzz/target/logs/$t$suffix.log"
    grep -E '^(==[0-9]+==ERROR|thread .* panicked|SUMMARY)' "fuzz/target/logs/$t$suffix.log" | head -n 5 >&2
    ls -t "fuzz/artifacts/$t" 2>/dev/null | head -n 3 | sed "s|^|  fuzz/artifacts/$t/|" >&2
  fi
done
echo "$label: $passed passed, $failed failed"
[ "$failed" = 0 ]
