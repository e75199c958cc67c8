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

impl LinkConfig {
    /// Checks every value's range, as `check-config` and the agent's start both do; the error
    /// names the field (`link.FIELD`) and the rule.
    pub fn check(&self) -> Result<(), (String, String)> {
        let field = |name: &str| format!("link.{name}");
        let between = |name: &str, value: Duration, min: Duration, max: Duration| {
            if value < min || value > max {
                Err((
                    field(name),
                    format!(
                        "must be between {} and {}, got {}",
                        humantime::format_duration(min),
                        humantime::format_duration(max),
                        humantime::format_duration(value)
                    ),
                ))
            } else {
                Ok(())
            }
        };
        let ms = Duration::from_millis;
        let hour = Duration::from_secs(3600);
        between("connect_timeout", self.connect_timeout, ms(10), hour)?;
        between("idle_timeout", self.idle_timeout, ms(100), hour)?;
        between("heartbeat_interval", self.heartbeat_interval, ms(10), hour)?;
        between("reconnect_initial", self.reconnect_initial, ms(1), hour)?;
        between(
            "reconnect_max",
            self.reconnect_max,
            self.reconnect_initial,
            hour,
        )?;
        let at_least_one = |name: &str, value: u64, max: u64| {
            if value == 0 || value > max {
                Err((
                    field(name),
                    format!("must be between 1 and {max}, got {value}"),
                ))
            } else {
                Ok(())
            }
        };
        at_least_one("outbox_max_batches", self.outbox_max_batches, 100_000_000)?;
        at_least_one("max_in_flight", self.max_in_flight as u64, 65_536)?;
        if self.max_frame_bytes < 4096 || self.max_frame_bytes > 64 << 20 {
            return Err((
                field("max_frame_bytes"),
                format!(
                    "must be between 4096 and {}, got {}",
                    64 << 20,
                    self.max_frame_bytes
                ),
            ));
        }
        if self.hub.trim().is_empty() || !self.hub.contains(':') {
            return Err((
                field("hub"),
                format!("must be HOST:PORT, got {:?}", self.hub),
            ));
        }
        if self.server_name.trim().is_empty() {
            return Err((field("server_name"), "must not be empty".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_pass_the_checks() {
        assert_eq!(LinkConfig::default().check(), Ok(()));
    }

    #[test]
    fn zero_durations_and_sizes_are_refused_with_the_field() {
        for (text, field) in [
            ("heartbeat_interval = \"0s\"", "link.heartbeat_interval"),
            ("connect_timeout = \"0s\"", "link.connect_timeout"),
            ("idle_timeout = \"0s\"", "link.idle_timeout"),
            ("reconnect_initial = \"0s\"", "link.reconnect_initial"),
            ("reconnect_max = \"100ms\"", "link.reconnect_max"),
            ("outbox_max_batches = 0", "link.outbox_max_batches"),
            ("max_in_flight = 0", "link.max_in_flight"),
            ("max_frame_bytes = 0", "link.max_frame_bytes"),
            ("hub = \"\"", "link.hub"),
        ] {
            let config: LinkConfig = toml::from_str(text).unwrap();
            let (got, reason) = config.check().unwrap_err();
            assert_eq!(got, field, "{text}: {reason}");
        }
    }

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
