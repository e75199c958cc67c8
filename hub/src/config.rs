//! The hub's configuration file (TOML). Every field has a default, stated here and in the
//! README; unknown fields are refused, and a bad file is reported with its path, line and
//! column.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Invalid {
        path: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}: [rollouts] {message}")]
    Rollouts { path: String, message: String },
    #[error("{path}: {message}")]
    OutOfRange { path: String, message: String },
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HubConfig {
    /// Name of this hub, sent to agents in the welcome. Default `synapse-hub`.
    pub hub_id: String,
    /// Directory of the hub's sled store. Default `/var/lib/synapse-hub`.
    pub data_dir: PathBuf,
    pub tls: TlsConfig,
    pub link: LinkConfig,
    pub console: ConsoleConfig,
    pub metrics: MetricsConfig,
    pub rollouts: RolloutsConfig,
    /// Federated learning of the neural forecaster (`[federation]`).
    pub federation: crate::federation::FederationConfig,
    pub placement: crate::placement::config::PlacementConfig,
}

/// Certificates of the hub; the same CA signs agents' and operators' certificates.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Default `/etc/synapse/tls/ca.pem`.
    pub ca: PathBuf,
    /// Default `/etc/synapse/tls/synapse-hub.pem`.
    pub cert: PathBuf,
    /// Default `/etc/synapse/tls/synapse-hub.key`.
    pub key: PathBuf,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LinkConfig {
    /// UDP address of the QUIC link. Default `0.0.0.0:7443`.
    pub listen: SocketAddr,
    /// Largest frame accepted from an agent, in bytes. Default 1048576.
    pub max_frame_bytes: usize,
    /// Time an agent has to complete the handshake and send its hello. Default `5s`.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// A connection silent this long is closed. Default `30s`.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Heartbeat interval the agents use; an agent silent for three of them is `stale`.
    /// Default `5s`.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// TCP address of the gRPC console (TLS, operator and viewer certificates). Default
    /// `127.0.0.1:7444`.
    pub listen: SocketAddr,
    /// Revocation list (one certificate serial in hex or SHA-256 fingerprint per line), re-read
    /// when it changes; refuses console calls and agents' links. Default: none.
    pub revoked: Option<PathBuf>,
    /// Audit entries kept (state-changing console calls and refusals). Default 100000.
    pub audit_keep: u64,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// TCP address of the Prometheus endpoint (`/metrics`). Default `127.0.0.1:9465`.
    pub listen: SocketAddr,
}

/// Fleet rollouts (`synapsectl rollouts`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RolloutsConfig {
    /// Steps of a rollout that names none. Default `["1/tier", "10%", "50%", "100%"]`.
    pub steps: Vec<String>,
    /// Bake time of each step of a rollout that names none. Default `5m`.
    #[serde(with = "humantime_serde")]
    pub bake: Duration,
    /// How often the engine checks bake times and sends what agents miss. Default `1s`.
    #[serde(with = "humantime_serde")]
    pub tick: Duration,
    pub gates: GateThresholds,
    pub models: ModelPolicy,
}

/// How much worse the updated hosts may be than the hosts not yet updated.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GateThresholds {
    /// Error-rate gates and cold starts judge nothing below this many gateway invocations
    /// on the updated hosts in a step's window. Default 20.
    pub min_invocations: u64,
    /// Largest increase of the invocation error rate (a share, 0..1). Default 0.02.
    pub max_error_rate_increase: f64,
    /// Largest increase of the cold-start rate (cold invocations per invocation). Default 0.1.
    pub max_cold_start_rate_increase: f64,
    /// Largest ratio of updated to not-updated p99 gateway latency. Default 1.5.
    pub max_p99_ratio: f64,
    /// Added to the p99 limit, so that sub-millisecond noise fails nothing. Default `50ms`.
    #[serde(with = "humantime_serde")]
    pub p99_slack: Duration,
    /// Largest ratio of updated to not-updated mean absolute forecast error. Default 1.1.
    pub max_forecast_error_ratio: f64,
    /// Updated hosts that may fail to apply the version (or not run it by the end of the
    /// bake) before the step fails. Default 0.
    pub max_apply_failures: u32,
}

/// The rollout every new forecaster version from a federated round goes through.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ModelPolicy {
    /// Default `["1/tier", "100%"]`: a canary per tier, then everyone.
    pub steps: Vec<String>,
    /// Default `10m`.
    #[serde(with = "humantime_serde")]
    pub bake: Duration,
}

impl Default for RolloutsConfig {
    fn default() -> Self {
        Self {
            steps: ["1/tier", "10%", "50%", "100%"].map(String::from).to_vec(),
            bake: Duration::from_secs(300),
            tick: Duration::from_secs(1),
            gates: GateThresholds::default(),
            models: ModelPolicy::default(),
        }
    }
}

impl Default for GateThresholds {
    fn default() -> Self {
        Self {
            min_invocations: 20,
            max_error_rate_increase: 0.02,
            max_cold_start_rate_increase: 0.1,
            max_p99_ratio: 1.5,
            p99_slack: Duration::from_millis(50),
            max_forecast_error_ratio: 1.1,
            max_apply_failures: 0,
        }
    }
}

impl Default for ModelPolicy {
    fn default() -> Self {
        Self {
            steps: ["1/tier", "100%"].map(String::from).to_vec(),
            bake: Duration::from_secs(600),
        }
    }
}

impl RolloutsConfig {
    /// Checks what serde cannot: step texts, finite non-negative thresholds, a tick.
    pub fn validate(&self) -> Result<(), String> {
        crate::rollout::parse_steps(&self.steps).map_err(|e| format!("steps: {e}"))?;
        crate::rollout::parse_steps(&self.models.steps)
            .map_err(|e| format!("models.steps: {e}"))?;
        let g = &self.gates;
        for (name, value) in [
            ("max_error_rate_increase", g.max_error_rate_increase),
            (
                "max_cold_start_rate_increase",
                g.max_cold_start_rate_increase,
            ),
            ("max_p99_ratio", g.max_p99_ratio),
            ("max_forecast_error_ratio", g.max_forecast_error_ratio),
        ] {
            if !value.is_finite() || value < 0.0 {
                return Err(format!("gates.{name} = {value}: must be finite and ≥ 0"));
            }
        }
        if self.tick.is_zero() {
            return Err("tick must be longer than 0".into());
        }
        Ok(())
    }
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            hub_id: "synapse-hub".into(),
            data_dir: "/var/lib/synapse-hub".into(),
            tls: TlsConfig::default(),
            link: LinkConfig::default(),
            console: ConsoleConfig::default(),
            metrics: MetricsConfig::default(),
            rollouts: RolloutsConfig::default(),
            federation: Default::default(),
            placement: Default::default(),
        }
    }
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            ca: "/etc/synapse/tls/ca.pem".into(),
            cert: "/etc/synapse/tls/synapse-hub.pem".into(),
            key: "/etc/synapse/tls/synapse-hub.key".into(),
        }
    }
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self {
            listen: ([0, 0, 0, 0], 7443).into(),
            max_frame_bytes: synapse_link::codec::DEFAULT_MAX_FRAME_BYTES,
            handshake_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            heartbeat_interval: Duration::from_secs(5),
        }
    }
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            listen: ([127, 0, 0, 1], 7444).into(),
            revoked: None,
            audit_keep: 100_000,
        }
    }
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: ([127, 0, 0, 1], 9465).into(),
        }
    }
}

impl HubConfig {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses configuration text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text).map_err(|e| {
            let offset = e.span().map(|span| span.start).unwrap_or(0);
            let before = &text[..offset.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
            ConfigError::Invalid {
                path: origin.to_owned(),
                line,
                column,
                message: e.message().to_owned(),
            }
        })?;
        config
            .rollouts
            .validate()
            .map_err(|message| ConfigError::Rollouts {
                path: origin.to_owned(),
                message,
            })?;
        if !(1..=10_000_000).contains(&config.console.audit_keep) {
            return Err(ConfigError::OutOfRange {
                path: origin.to_owned(),
                message: format!(
                    "[console] audit_keep = {} must be between 1 and 10000000",
                    config.console.audit_keep
                ),
            });
        }
        config
            .placement
            .check()
            .map_err(|message| ConfigError::OutOfRange {
                path: origin.to_owned(),
                message,
            })?;
        config
            .check_ranges()
            .map_err(|message| ConfigError::OutOfRange {
                path: origin.to_owned(),
                message,
            })?;
        Ok(config)
    }

    /// The ranges of the other sections: what would otherwise make the hub refuse to start,
    /// or start and misbehave, is refused here, so `--check` says it first.
    fn check_ranges(&self) -> Result<(), String> {
        if !synapse_link::names::is_function_name(&self.hub_id) {
            return Err(format!(
                "hub_id {:?} must be 1 to 64 letters, digits, `-`, `_` or `.`",
                self.hub_id
            ));
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err("data_dir must not be empty".into());
        }
        let link = &self.link;
        if !(MIN_FRAME_BYTES..=MAX_FRAME_BYTES).contains(&link.max_frame_bytes) {
            return Err(format!(
                "link.max_frame_bytes must be between {MIN_FRAME_BYTES} and {MAX_FRAME_BYTES}, not {}",
                link.max_frame_bytes
            ));
        }
        let between = |name: &str, value: Duration, min: Duration, max: Duration| {
            if value < min || value > max {
                Err(format!(
                    "{name} must be between {} and {}, not {}",
                    humantime_serde::re::humantime::format_duration(min),
                    humantime_serde::re::humantime::format_duration(max),
                    humantime_serde::re::humantime::format_duration(value)
                ))
            } else {
                Ok(())
            }
        };
        let ms = Duration::from_millis;
        let s = Duration::from_secs;
        between(
            "link.handshake_timeout",
            link.handshake_timeout,
            ms(10),
            s(600),
        )?;
        between(
            "link.heartbeat_interval",
            link.heartbeat_interval,
            ms(100),
            s(600),
        )?;
        between("link.idle_timeout", link.idle_timeout, ms(200), s(3600))?;
        if link.idle_timeout <= link.heartbeat_interval {
            return Err(format!(
                "link.idle_timeout ({}) must be longer than link.heartbeat_interval ({}): \
                 connections would close between heartbeats",
                humantime_serde::re::humantime::format_duration(link.idle_timeout),
                humantime_serde::re::humantime::format_duration(link.heartbeat_interval)
            ));
        }
        between("rollouts.tick", self.rollouts.tick, ms(10), s(3600))?;
        self.federation
            .validate()
            .map_err(|e| format!("federation.{}: {}", e.field, e.reason))?;
        Ok(())
    }
}

/// The smallest `link.max_frame_bytes`: a model chunk or a telemetry batch must fit.
const MIN_FRAME_BYTES: usize = 16 * 1024;
/// The largest `link.max_frame_bytes`: one frame is read whole into memory.
const MAX_FRAME_BYTES: usize = 256 * 1024 * 1024;

#[cfg(test)]
mod shipped_file;
#[cfg(test)]
mod tests;
