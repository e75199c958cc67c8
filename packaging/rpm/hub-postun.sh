# synapse-hub %postun ($1: 0 = erase, 1+ = upgrade): reload systemd, restart on upgrade;
# on erase, /etc/synapse goes when nothing is left in it.
if [ "$1" -eq 0 ]; then
    rmdir /etc/synapse 2>/dev/null || :
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -ge 1 ]; then
        systemctl try-restart synapse-hub.service >/dev/null 2>&1 || :
    fi
fi
