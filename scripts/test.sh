#!/usr/bin/env bash
# The test command (`make test`): sets up what is missing, then checks formatting and lints,
# runs every test, the kernel ones included (they need root), and checks the packages.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
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
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --locked --no-fail-fast 2>&1 | tee target/test.log
# The packages: built, linted, listed, installed, removed and purged (packaging/README).
bash scripts/package-check.sh
# One closing line for the whole run.
awk '/^test result:/ { p += $4; f += $6; i += $8 } END { printf "all tests: %d passed, %d failed\n", p, f; exit (f > 0) }' target/test.log
