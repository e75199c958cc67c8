#!/usr/bin/env bash
# Sets up what building and running SynapseStream needs on a Debian host, idempotently:
# Debian's LLVM 22 (for bpf-linker), curl and iproute2, the nightly
# rust-src component (eBPF target), bpf-linker, the packaging tools (lintian, rpm,
# cargo-deb, cargo-generate-rpm), nginx (the gateway benchmark's comparison), and tracefs.
# Each step is skipped when its result is already there, so running it twice costs a few
# milliseconds.
set -euo pipefail

LLVM_DIR=/usr/lib/llvm-22
say() { printf 'setup: %s\n' "$*" >&2; }

need_apt=()
[ -x "$LLVM_DIR/bin/llvm-config" ] || need_apt+=(llvm-22-dev libpolly-22-dev)
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
# Packaging (`make package`, and `make test` checks the packages): lintian, rpm (and its
# rpm2archive), dpkg-shlibdeps for cargo-deb's dependencies, systemd-analyze to verify the
# units, adduser for the hub package's maintainer script.
command -v lintian >/dev/null 2>&1 || need_apt+=(lintian)
command -v rpm >/dev/null 2>&1 || need_apt+=(rpm)
command -v rpm2archive >/dev/null 2>&1 || need_apt+=(rpm2cpio)
command -v dpkg-shlibdeps >/dev/null 2>&1 || need_apt+=(dpkg-dev)
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)
command -v adduser >/dev/null 2>&1 || need_apt+=(adduser)
# The gateway benchmark (`make bench`) runs Debian's nginx binary with a configuration of its
# own; the package's service is not wanted: it is neither started nor left enabled.
nginx=no
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  need_apt+=(nginx)
  nginx=yes
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  say "installing Debian packages: ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # nginx's service does not start during the installation: invoke-rc.d asks policy-rc.d,
  # and 101 is a refusal. A policy-rc.d already there (containers have one) is left as it is.
  if [ "$nginx" = yes ] && [ ! -e /usr/sbin/policy-rc.d ]; then
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  if [ "$nginx" = yes ]; then
    # The package enables its service for the next boot: undo that (systemd or sysvinit).
    systemctl disable --quiet nginx >/dev/null 2>&1 || true
    update-rc.d nginx disable >/dev/null 2>&1 || true
  fi
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

# The package builders, at the versions the packaging was written against.
for tool in cargo-deb@3.8.0 cargo-generate-rpm@0.21.1; do
  if ! command -v "${tool%@*}" >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/${tool%@*}" ]; then
    say "installing ${tool%@*} (once, a few minutes)"
    cargo install --locked --quiet "$tool"
  fi
done

if [ "$(id -u)" = 0 ] && ! grep -q ' /sys/kernel/tracing tracefs ' /proc/mounts; then
  say "mounting tracefs at /sys/kernel/tracing"
  mount -t tracefs nodev /sys/kernel/tracing || say "could not mount tracefs (the agent will retry)"
fi
