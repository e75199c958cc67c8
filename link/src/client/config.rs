//! Configuration of the agent side of the link (the `[link]` table of the agent's config).

use std::{path::PathBuf, time::Duration};

use serde::Deserialize;

/// How an agent reaches its hub. Every field has a default, written next to it.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LinkConfig {
    /// Hub address, `HOST:PORT` (UDP). Default `127.0.0.1:7443`.
    pub hub: String,
    /// Name the hub's certificate must carry (DNS SAN). Default `synapse-hub`.
    pub server_name: String,
    /// CA certificate that signed the hub's certificate (PEM). Default `/etc/synapse/tls/ca.pem`.
    pub ca: PathBuf,
    /// This agent's certificate (PEM). Default `/etc/synapse/tls/agent.pem`.
    pub cert: PathBuf,
    /// This agent's private key (PEM, mode 0600). Default `/etc/synapse/tls/agent.key`.
    pub key: PathBuf,
    /// Most telemetry batches kept while the hub is away; the oldest are dropped beyond.
    /// Default 100000.
    pub outbox_max_batches: u64,
    /// Batches sent and not yet acknowledged, at most. Default 64.
    pub max_in_flight: usize,
    /// Largest frame accepted from the hub, in bytes. Default 1048576.
    pub max_frame_bytes: usize,
    /// Time allowed for the QUIC handshake and the hub's welcome. Default `5s`.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// A connection silent this long is dead (QUIC keep-alives are sent at a third of it).
    /// Default `30s`.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Interval of heartbeats, which carry the outbox state. Default `5s`.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// First reconnect delay; doubles per failure, with jitter. Default `200ms`.
    #[serde(with = "humantime_serde")]
    pub reconnect_initial: Duration,
    /// Longest reconnect delay. Default `30s`.
    #[serde(with = "humantime_serde")]
    pub reconnect_max: Duration,
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self {
            hub: "127.0.0.1:7443".into(),
            server_name: "synapse-hub".into(),
            ca: "/etc/synapse/tls/ca.pem".into(),
            cert: "/etc/synapse/tls/agent.pem".into(),
            key: "/etc/synapse/tls/agent.key".into(),
            outbox_max_batches: 100_000,
            max_in_flight: 64,
            max_frame_bytes: crate::codec::DEFAULT_MAX_FRAME_BYTES,
            connect_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            heartbeat_interval: Duration::from_secs(5),
            reconnect_initial: Duration::from_millis(200),
            reconnect_max: Duration::from_secs(30),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_table_gives_the_documented_defaults() {
        let config: LinkConfig = toml::from_str("").unwrap();
        assert_eq!(config, LinkConfig::default());
        assert_eq!(config.heartbeat_interval, Duration::from_secs(5));
    }

    #[test]
    fn durations_are_human_readable_and_unknown_fields_refused() {
        let config: LinkConfig =
            toml::from_str("hub = \"10.0.0.1:7443\"\nconnect_timeout = \"2s\"").unwrap();
        assert_eq!(config.connect_timeout, Duration::from_secs(2));
        let err = toml::from_str::<LinkConfig>("hubb = \"x\"").unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }
}
