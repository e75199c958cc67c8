#!/usr/bin/env bash
# Hunts flaky tests: runs every test binary of the workspace (unit and integration) N times
# (default 20), JOBS binaries at a time (default 1), and keeps the output of every failed run
# in target/repeat/. As root, like `make test`. Usage: scripts/repeat-tests.sh [N] [JOBS] [FILTER]
# (FILTER: a substring of the binaries' names, e.g. `fleet`).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
runs=${1:-20}
jobs=${2:-1}
filter=${3:-}
out=$PWD/target/repeat
rm -rf "$out"
mkdir -p "$out"
# The test binaries cargo test would run, built once, with the directory each runs in.
cargo test --locked --no-run --message-format=json 2>/dev/null \
  | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("profile", {}).get("test") and m.get("executable"):
        print(m["executable"], m["manifest_path"].rsplit("/", 1)[0])
' | grep -F -- "$filter" > "$out/binaries" || true
[ -s "$out/binaries" ] || { echo "repeat-tests: no test binary matches '$filter'" >&2; exit 1; }

one() { # one BINARY DIR: N runs, a line of the result
  local bin=$1 dir=$2 name fails=0 i started
  name=$(basename "$bin")
  started=$(date +%s)
  for i in $(seq 1 "$runs"); do
    if ! (cd "$dir" && "$bin" > "$out/$name.$i.log" 2>&1); then
      fails=$((fails + 1))
    else
      rm -f "$out/$name.$i.log"
    fi
  done
  printf '%-45s %3d runs %3d failed %5d s\n' "$name" "$runs" "$fails" $(( $(date +%s) - started ))
}
export -f one
export runs out
xargs -P "$jobs" -L 1 bash -c 'one "$0" "$1"' < "$out/binaries" | tee "$out/summary"
failed=$(awk '$4 > 0' "$out/summary" | wc -l)
echo "repeat-tests: $(wc -l < "$out/summary") binaries, $failed with failures (logs in $out/)"
[ "$failed" = 0 ]
