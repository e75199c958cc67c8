# synapse-hub %pre: the system user `synapse`, before its files are installed.
getent group synapse >/dev/null || groupadd -r synapse
getent passwd synapse >/dev/null || useradd -r -g synapse -d /var/lib/synapse-hub \
    -s /sbin/nologin -c "SynapseStream hub" synapse
