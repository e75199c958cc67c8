#!/usr/bin/env bash
# The packaging checks of `make test` (root, on a machine that may be changed and is restored):
#  1. the packages are built (scripts/package.sh);
#  2. lintian reports no error on either .deb, and every warning it prints is justified in
#     packaging/README;
#  3. each .rpm holds exactly the expected files, config files, owners, scriptlets and
#     version, and its binaries answer --version;
#  4. install test: both .debs are installed with dpkg (without a running systemd, as in a
#     container), files, conffiles, modes, the hub's user, the enabled units and the binaries'
#     --version are checked, `systemd-analyze verify` passes on the installed units; then
#     remove keeps config and state, and purge deletes them. The packages are purged (and a
#     user the test made is deleted) even when a check fails.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "package-check: installs packages: run as root" >&2; exit 1; }
bash scripts/package.sh
. scripts/env.sh

checks=0
fail() {
  echo "package-check: FAILED: $*" >&2
  echo "package-check: $checks passed, 1 failed"
  exit 1
}
expect() { # expect WHAT ACTUAL EXPECTED
  [ "$2" = "$3" ] || fail "$1: got '$2', expected '$3'"
  checks=$((checks + 1))
}
expect_path() { # expect_path PATH MODE OWNER:GROUP
  [ -e "$1" ] || fail "$1 is missing"
  expect "mode and owner of $1" "$(stat -c '%a %U:%G' "$1")" "$2 $3"
}
expect_gone() {
  [ ! -e "$1" ] || fail "$1 is still there"
  checks=$((checks + 1))
}

version=$(cargo pkgid -p synapse-agent | sed 's/.*[@#]//')
expect "version of synapse-hub" "$(cargo pkgid -p synapse-hub | sed 's/.*[@#]//')" "$version"
# The Debian changelog (which lintian requires) names the version, so it must follow Cargo's.
expect "version in packaging/changelog" "$(dpkg-parsechangelog -l packaging/changelog -S Version)" \
  "$version-1"
arch=$(dpkg --print-architecture)
out=target/package
agent_deb=$out/synapse-agent_${version}-1_$arch.deb
hub_deb=$out/synapse-hub_${version}-1_$arch.deb
agent_rpm=$(ls "$out"/synapse-agent-"$version"-*.rpm)
hub_rpm=$(ls "$out"/synapse-hub-"$version"-*.rpm)

echo "== lintian"
lintian_log=$out/lintian.log
lintian --fail-on error --tag-display-limit 0 "$agent_deb" "$hub_deb" > "$lintian_log" 2>&1 \
  || { cat "$lintian_log"; fail "lintian reports errors (above)"; }
cat "$lintian_log"
for tag in $(awk '$1 ~ /^[WIP]:$/ { print $3 }' "$lintian_log" | sort -u); do
  grep -q -- "\`$tag\`" packaging/README || fail "lintian tag $tag is not justified in packaging/README"
  checks=$((checks + 1))
done
if grep -q '^E:' "$lintian_log"; then fail "lintian reports errors"; fi

echo "== rpm"
expect "files of $agent_rpm" "$(rpm -qlp "$agent_rpm" | sort | tr '\n' ' ')" \
  "/etc/synapse/agent.toml /usr/bin/synapse-agent /usr/lib/systemd/system/synapse-agent.service /usr/share/doc/synapse-agent/README.md "
expect "files of $hub_rpm" "$(rpm -qlp "$hub_rpm" | sort | tr '\n' ' ')" \
  "/etc/synapse/hub.toml /usr/bin/synapse-hub /usr/bin/synapsectl /usr/lib/systemd/system/synapse-hub.service /usr/share/doc/synapse-hub/README.md "
expect "config files of $agent_rpm" "$(rpm -qcp "$agent_rpm")" /etc/synapse/agent.toml
expect "config files of $hub_rpm" "$(rpm -qcp "$hub_rpm")" /etc/synapse/hub.toml
expect "version of $agent_rpm" "$(rpm -qp --qf '%{VERSION}' "$agent_rpm")" "$version"
expect "version of $hub_rpm" "$(rpm -qp --qf '%{VERSION}' "$hub_rpm")" "$version"
expect "owners in $agent_rpm" "$(rpm -qlvp "$agent_rpm" | awk '{ print $3 ":" $4 }' | sort -u)" root:root
expect "owners in $hub_rpm" "$(rpm -qlvp "$hub_rpm" | awk '{ print $3 ":" $4 }' | sort -u)" root:root
# A scriptlet whose file went missing would be packaged as its path: check what they do.
scriptlets() { rpm -qp --scripts "$1" | grep -v '^ *#'; }
for expected in 'postinstall scriptlet' 'install -d -m 0700 /var/lib/synapse-agent' \
  'systemctl enable synapse-agent.service' 'preuninstall scriptlet' \
  'systemctl disable synapse-agent.service' 'postuninstall scriptlet' 'try-restart synapse-agent'; do
  scriptlets "$agent_rpm" | grep -qF "$expected" || fail "$agent_rpm: no '$expected' in its scriptlets"
  checks=$((checks + 1))
done
for expected in 'preinstall scriptlet' 'useradd -r -g synapse' \
  'install -d -o synapse -g synapse -m 0700 /var/lib/synapse-hub' 'systemctl enable synapse-hub.service' \
  'systemctl disable synapse-hub.service' 'try-restart synapse-hub'; do
  scriptlets "$hub_rpm" | grep -qF "$expected" || fail "$hub_rpm: no '$expected' in its scriptlets"
  checks=$((checks + 1))
done
scratch=$(mktemp -d /tmp/synapse-rpm.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
for rpm_file in "$agent_rpm" "$hub_rpm"; do
  rpm2archive -n < "$rpm_file" | tar -x -C "$scratch"
done
for bin in synapse-agent synapse-hub synapsectl; do
  expect "$bin --version (rpm)" "$("$scratch/usr/bin/$bin" --version)" "$bin $version"
  if readelf -SW "$scratch/usr/bin/$bin" | grep -Eq '\.debug_(info|line)'; then fail "$bin in the rpm is not stripped"; fi
done
rm -rf "$scratch"

echo "== install test"
for package in synapse-agent synapse-hub; do
  if dpkg-query -W -f='${db:Status-Status}' "$package" 2>/dev/null | grep -qv not-installed; then
    fail "$package is already on this machine; this test installs and purges it"
  fi
done
for path in /etc/synapse/agent.toml /etc/synapse/hub.toml /var/lib/synapse-agent /var/lib/synapse-hub; do
  [ ! -e "$path" ] || fail "$path exists; this test would purge it"
done
user_existed=no
getent passwd synapse >/dev/null && user_existed=yes
etc_existed=no
[ -d /etc/synapse ] && etc_existed=yes
restore() {
  dpkg --purge synapse-agent synapse-hub >/dev/null 2>&1 || true
  # What a broken purge left behind (none of it was there before, checked above).
  rm -rf /etc/synapse/agent.toml /etc/synapse/hub.toml /var/lib/synapse-agent /var/lib/synapse-hub
  [ "$etc_existed" = yes ] || rmdir /etc/synapse 2>/dev/null || true
  if [ "$user_existed" = no ] && getent passwd synapse >/dev/null; then
    userdel synapse 2>/dev/null || true
    getent group synapse >/dev/null && groupdel synapse 2>/dev/null || true
  fi
}
trap restore EXIT

dpkg -i "$agent_deb" "$hub_deb" > "$out/dpkg-install.log" 2>&1 \
  || { cat "$out/dpkg-install.log"; fail "dpkg -i"; }
for package in synapse-agent synapse-hub; do
  expect "status of $package" "$(dpkg-query -W -f='${Status} ${Version}' "$package")" \
    "install ok installed $version-1"
done
expect "conffiles of synapse-agent" "$(dpkg-query -W -f='${Conffiles}' synapse-agent | xargs)" \
  "/etc/synapse/agent.toml $(md5sum < packaging/agent.toml | cut -d' ' -f1)"
expect "conffiles of synapse-hub" "$(dpkg-query -W -f='${Conffiles}' synapse-hub | xargs)" \
  "/etc/synapse/hub.toml $(md5sum < hub/hub.example.toml | cut -d' ' -f1)"
for path in /usr/bin/synapse-agent /usr/bin/synapse-hub /usr/bin/synapsectl; do
  expect_path "$path" 755 root:root
  if readelf -SW "$path" | grep -Eq '\.debug_(info|line)'; then fail "$path is not stripped"; fi
done
for path in /etc/synapse/agent.toml /etc/synapse/hub.toml \
  /usr/lib/systemd/system/synapse-agent.service /usr/lib/systemd/system/synapse-hub.service \
  /usr/share/doc/synapse-agent/copyright /usr/share/doc/synapse-hub/copyright; do
  expect_path "$path" 644 root:root
done
expect_path /etc/synapse 755 root:root
expect_path /var/lib/synapse-agent 700 root:root
expect_path /var/lib/synapse-hub 700 synapse:synapse
expect "the hub's user" "$(getent passwd synapse | cut -d: -f6,7)" "/var/lib/synapse-hub:/usr/sbin/nologin"
[ "$(id -u synapse)" -lt 1000 ] || fail "synapse is not a system user"
for unit in synapse-agent synapse-hub; do
  expect "$unit enabled" "$(readlink -f /etc/systemd/system/multi-user.target.wants/$unit.service)" \
    "$(readlink -f /usr/lib/systemd/system/$unit.service)"
done
for bin in synapse-agent synapse-hub synapsectl; do
  expect "$bin --version" "$("/usr/bin/$bin" --version)" "$bin $version"
done
/usr/bin/synapse-agent check-config /etc/synapse/agent.toml > /dev/null \
  || fail "synapse-agent refuses the installed /etc/synapse/agent.toml"
/usr/bin/synapse-hub --config /etc/synapse/hub.toml --check > /dev/null \
  || fail "synapse-hub refuses the installed /etc/synapse/hub.toml"
# Offline: no running systemd is needed to verify units (and this machine may have none).
# verify only warns about an unknown key or a bad value: any word about our units fails.
verify=$(systemd-analyze verify --man=no /usr/lib/systemd/system/synapse-agent.service \
  /usr/lib/systemd/system/synapse-hub.service 2>&1) || fail "systemd-analyze verify: $verify"
if grep -q 'synapse-' <<< "$verify"; then fail "systemd-analyze verify: $verify"; fi
checks=$((checks + 1))

# Remove keeps configuration and state; purge deletes them.
touch /var/lib/synapse-agent/marker /var/lib/synapse-hub/marker
dpkg -r synapse-agent synapse-hub > "$out/dpkg-remove.log" 2>&1 \
  || { cat "$out/dpkg-remove.log"; fail "dpkg -r"; }
for package in synapse-agent synapse-hub; do
  expect "status of $package after remove" "$(dpkg-query -W -f='${Status}' "$package")" \
    "deinstall ok config-files"
done
expect_path /etc/synapse/agent.toml 644 root:root
expect_path /etc/synapse/hub.toml 644 root:root
expect_path /var/lib/synapse-agent/marker 644 root:root
expect_path /var/lib/synapse-hub/marker 644 root:root
expect_gone /usr/bin/synapse-agent
expect_gone /usr/bin/synapse-hub
dpkg -P synapse-agent synapse-hub > "$out/dpkg-purge.log" 2>&1 \
  || { cat "$out/dpkg-purge.log"; fail "dpkg -P"; }
for path in /etc/synapse/agent.toml /etc/synapse/hub.toml /var/lib/synapse-agent \
  /var/lib/synapse-hub /etc/systemd/system/multi-user.target.wants/synapse-agent.service \
  /etc/systemd/system/multi-user.target.wants/synapse-hub.service; do
  expect_gone "$path"
done
for package in synapse-agent synapse-hub; do
  if dpkg-query -W -f='${db:Status-Status}' "$package" 2>/dev/null | grep -qv not-installed; then
    fail "$package is still known to dpkg after purge"
  fi
done

# Read by scripts/test.sh for the run's closing line.
echo "package-check: $checks passed, 0 failed"
