#!/usr/bin/env bash
# The test command (`make test`): sets up what is missing, then checks formatting and lints,
# runs every test, the kernel ones included (they need root), runs every benchmark in its
# smoke mode and checks the packages. Every stage runs even when an earlier one failed, and
# the last line counts them all: `make-test: N passed, N failed` (tests, smoke benchmarks,
# package checks, and the fmt and clippy stages as one check each); the exit status is
# non-zero when anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || { echo "make-test: 0 passed, 1 failed"; exit 1; }
. scripts/env.sh
if [ "$(id -u)" != 0 ]; then
  echo "test: the kernel tests load eBPF programs and create cgroups: run as root" >&2
  exit 1
fi
# A clean build needs about 8 GB in target/ (README): say so up front rather than as a linker's
# "No space left on device" half an hour in.
mkdir -p target
free_gb=$(df -P -k target | awk 'NR == 2 { print int($4 / 1048576) }')
if [ ! -d target/debug ] && [ "$free_gb" -lt 9 ]; then
  echo "test: warning: $free_gb GB free for target/, a clean build needs about 8 GB" >&2
fi

passed=0
failed=0
failures=()
# count STAGE PASSED FAILED: adds a stage's figures to the run's.
count() {
  passed=$((passed + $2))
  failed=$((failed + $3))
  [ "$3" = 0 ] || failures+=("$1 ($3)")
}
# A stage's own closing line, `WORD: N passed, M failed`, as "N M"; none = "0 1".
closing() {
  grep -E '^[a-z -]+: [0-9]+ passed, [0-9]+ failed' "$1" | tail -n 1 \
    | awk '{ print $(NF-3), $(NF-1) } END { if (NR == 0) print "0 1" }'
}

if cargo fmt --all -- --check; then count fmt 1 0; else count fmt 0 1; fi
if cargo clippy --all-targets --locked -- -D warnings; then count clippy 1 0; else count clippy 0 1; fi

cargo test --locked --no-fail-fast 2>&1 | tee target/test.log
status=${PIPESTATUS[0]}
read -r p f < <(awk '/^test result:/ { p += $4; f += $6 } END { print p + 0, f + 0 }' target/test.log)
# A test binary that did not build or died before its summary has no `test result:` line.
if [ "$status" != 0 ] && [ "$f" = 0 ]; then f=1; fi
count "cargo test" "$p" "$f"

bash scripts/bench-smoke.sh 2>&1 | tee target/bench-smoke.log
read -r p f < <(closing target/bench-smoke.log)
count "benchmark smoke runs" "$p" "$f"

# The fuzz targets once over their committed corpora, past crashes included (scripts/fuzz.sh).
bash scripts/fuzz.sh --smoke 2>&1 | tee target/fuzz-smoke.log
read -r p f < <(closing target/fuzz-smoke.log)
count "fuzz smoke runs" "$p" "$f"

# The packages: built, linted, listed, installed, removed and purged (packaging/README).
bash scripts/package-check.sh 2>&1 | tee target/package-check.log
read -r p f < <(closing target/package-check.log)
count "package checks" "$p" "$f"

[ "$failed" = 0 ] || echo "test: failed: ${failures[*]}" >&2
echo "make-test: $passed passed, $failed failed"
[ "$failed" = 0 ]
