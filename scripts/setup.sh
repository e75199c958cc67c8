#!/usr/bin/env bash
# Sets up what building and running SynapseStream needs on a Debian host, idempotently:
# Debian's LLVM 22 (for bpf-linker), curl and iproute2, the nightly
# rust-src component (eBPF target), bpf-linker, and tracefs. Each step is skipped when
# its result is already there, so running it twice costs a few milliseconds.
set -euo pipefail

LLVM_DIR=/usr/lib/llvm-22
say() { printf 'setup: %s\n' "$*" >&2; }

need_apt=()
[ -x "$LLVM_DIR/bin/llvm-config" ] || need_apt+=(llvm-22-dev libpolly-22-dev)
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
if [ ${#need_apt[@]} -gt 0 ]; then
  say "installing Debian packages: ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if ! rustup component list --toolchain nightly --installed 2>/dev/null | grep -q '^rust-src'; then
  say "adding rust-src to the nightly toolchain"
  rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
  rustup component add rust-src --toolchain nightly
fi

if ! command -v bpf-linker >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/bpf-linker" ]; then
  say "building bpf-linker against LLVM 22 (once, a few minutes)"
  LLVM_PREFIX=$LLVM_DIR LLVM_SYS_221_PREFIX=$LLVM_DIR PATH="$LLVM_DIR/bin:$PATH" \
    cargo install --locked bpf-linker --no-default-features --features llvm-22
fi

if [ "$(id -u)" = 0 ] && ! grep -q ' /sys/kernel/tracing tracefs ' /proc/mounts; then
  say "mounting tracefs at /sys/kernel/tracing"
  mount -t tracefs nodev /sys/kernel/tracing || say "could not mount tracefs (the agent will retry)"
fi
