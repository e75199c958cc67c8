#!/usr/bin/env bash
# `make package`: the synapse-agent and synapse-hub packages, .deb (cargo-deb) and .rpm
# (cargo-generate-rpm), from the release binaries (the agent's embeds its eBPF object);
# versions come from Cargo. The packages land in target/package/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. scripts/env.sh

cargo build --release --locked -p synapse-agent -p synapse-hub \
  --bin synapse-agent --bin synapse-hub --bin synapsectl

out=target/package
rm -rf "$out"
mkdir -p "$out/stripped/release"

# The release profile keeps line tables (for profiles and backtraces); packages do not.
# cargo-deb strips its own copies; cargo-generate-rpm takes the binaries as they are, so it
# is pointed at stripped copies laid out as a target directory.
for package in synapse-agent synapse-hub; do
  cargo deb --no-build --strip --quiet -p "$package" -o "$out/"
done
for bin in synapse-agent synapse-hub synapsectl; do
  strip --strip-all -o "$out/stripped/release/$bin" "target/release/$bin"
done
for package in agent hub; do
  cargo generate-rpm -p "$package" --target-dir "$out/stripped" -o "$out/"
done
rm -rf "$out/stripped"

echo "packages in $out:"
ls -l "$out"/*.deb "$out"/*.rpm | awk '{ printf "  %-45s %6.1f MB\n", $NF, $5 / 1e6 }'
