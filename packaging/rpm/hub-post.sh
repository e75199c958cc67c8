# synapse-hub %post ($1: 1 = install, 2+ = upgrade): the state directory; enable on
# install; reload systemd only where it runs (containers and image builds have none).
# (Directories are made here: cargo-generate-rpm 0.21 cannot package an empty one.)
install -d -o synapse -g synapse -m 0700 /var/lib/synapse-hub
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
if [ "$1" -eq 1 ] && command -v systemctl >/dev/null 2>&1; then
    systemctl enable synapse-hub.service >/dev/null 2>&1 || :
fi
