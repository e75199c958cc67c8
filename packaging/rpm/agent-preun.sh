# synapse-agent %preun ($1: 0 = erase, 1+ = upgrade): stop and disable on erase. The config
# (modified: kept as .rpmsave) and /var/lib/synapse-agent stay.
if [ "$1" -eq 0 ] && command -v systemctl >/dev/null 2>&1; then
    if [ -d /run/systemd/system ]; then
        systemctl stop synapse-agent.service >/dev/null 2>&1 || :
    fi
    systemctl disable synapse-agent.service >/dev/null 2>&1 || :
fi
