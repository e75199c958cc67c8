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
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --locked --no-fail-fast 2>&1 | tee target/test.log
# The packages: built, linted, listed, installed, removed and purged (packaging/README).
bash scripts/package-check.sh
# One closing line for the whole run.
awk '/^test result:/ { p += $4; f += $6; i += $8 } END { printf "all tests: %d passed, %d failed\n", p, f; exit (f > 0) }' target/test.log
