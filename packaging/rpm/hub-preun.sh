# synapse-hub %preun ($1: 0 = erase, 1+ = upgrade): stop and disable on erase. The config
# (modified: kept as .rpmsave), /var/lib/synapse-hub and the user stay.
if [ "$1" -eq 0 ] && command -v systemctl >/dev/null 2>&1; then
    if [ -d /run/systemd/system ]; then
        systemctl stop synapse-hub.service >/dev/null 2>&1 || :
    fi
    systemctl disable synapse-hub.service >/dev/null 2>&1 || :
fi
