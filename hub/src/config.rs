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
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_gives_the_documented_defaults() {
        let config = HubConfig::parse("", "hub.toml").unwrap();
        assert_eq!(config, HubConfig::default());
        assert_eq!(config.link.listen.port(), 7443);
        assert_eq!(config.console.listen.port(), 7444);
        assert_eq!(config.metrics.listen.port(), 9465);
    }

    #[test]
    fn an_unknown_field_is_reported_with_file_and_line() {
        let text = "hub_id = \"h\"\n\n[link]\nmax_frame_byte = 10\n";
        let err = HubConfig::parse(text, "/etc/synapse/hub.toml").unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with("/etc/synapse/hub.toml:4:1: "),
            "{message}"
        );
        assert!(
            message.contains("unknown field `max_frame_byte`"),
            "{message}"
        );
    }

    #[test]
    fn a_wrong_type_is_reported_at_its_line() {
        let text = "[console]\nlisten = 7444\n";
        let message = HubConfig::parse(text, "hub.toml").unwrap_err().to_string();
        assert!(message.starts_with("hub.toml:2:"), "{message}");
    }

    #[test]
    fn the_example_file_states_the_defaults() {
        let text = include_str!("../hub.example.toml");
        assert_eq!(
            HubConfig::parse(text, "hub.example.toml").unwrap(),
            HubConfig::default()
        );
    }

    #[test]
    fn values_the_hub_would_refuse_or_trip_on_at_start_are_refused_by_the_check() {
        for (text, expected) in [
            ("hub_id = \"\"\n", "hub_id"),
            ("hub_id = \"hub\\nagent\"\n", "hub_id"),
            ("[link]\nmax_frame_bytes = 0\n", "link.max_frame_bytes"),
            (
                "[link]\nhandshake_timeout = \"0s\"\n",
                "link.handshake_timeout",
            ),
            (
                "[link]\nheartbeat_interval = \"0s\"\n",
                "link.heartbeat_interval",
            ),
            ("[link]\nidle_timeout = \"0s\"\n", "link.idle_timeout"),
            (
                "[link]\nidle_timeout = \"3s\"\nheartbeat_interval = \"5s\"\n",
                "longer than link.heartbeat_interval",
            ),
            ("[rollouts]\ntick = \"0s\"\n", "tick"),
            ("[federation]\nmin_clients = 0\n", "federation.min_clients"),
            (
                "[federation]\nlearning_rate = -1.0\n",
                "federation.learning_rate",
            ),
            ("[federation]\nmomentum = 1.0\n", "federation.momentum"),
            (
                "[federation]\ndp_noise_sigma = 1.0\nclip_norm = 0.0\n",
                "federation.dp_noise_sigma",
            ),
            ("[federation]\nchunk_bytes = 10\n", "federation.chunk_bytes"),
        ] {
            let message = match HubConfig::parse(text, "hub.toml") {
                Ok(_) => panic!("{text:?} was accepted"),
                Err(e) => e.to_string(),
            };
            assert!(message.contains(expected), "{text:?}: {message}");
        }
    }

    #[test]
    fn a_rollout_step_that_does_not_parse_is_refused() {
        let text = "[rollouts]\nsteps = [\"1/tier\", \"50%\"]\n";
        let message = HubConfig::parse(text, "hub.toml").unwrap_err().to_string();
        assert!(message.contains("last step must be 100%"), "{message}");
        let text = "[rollouts.gates]\nmax_p99_ratio = nan\n";
        assert!(HubConfig::parse(text, "hub.toml").is_err());
    }

    #[test]
    fn placement_settings_are_read_and_checked() {
        let text = "[placement]\noptimization_interval = \"2s\"\nmax_moved_share = 0.5\n\
                    [placement.cost_weights]\ncost = 3.0\n\
                    [[placement.declared_latency]]\ntiers = [\"edge\", \"cloud\"]\nrtt = \"80ms\"\n";
        let config = HubConfig::parse(text, "hub.toml").unwrap();
        assert_eq!(
            config.placement.optimization_interval,
            Duration::from_secs(2)
        );
        assert_eq!(config.placement.cost_weights.cost, 3.0);
        assert_eq!(config.placement.cost_weights.user_latency, 1.0);
        let declared = config.placement.declared_latencies();
        assert_eq!(declared.get(3, 1), Some(0.08), "both directions");
        let bad = HubConfig::parse("[placement]\nmax_moved_share = 1.5\n", "hub.toml");
        let message = bad.unwrap_err().to_string();
        assert!(
            message.contains("max_moved_share must be between 0 and 1"),
            "{message}"
        );
        let bad = HubConfig::parse(
            "[[placement.declared_latency]]\ntiers = [\"edge\", \"moon\"]\nrtt = \"1ms\"\n",
            "hub.toml",
        );
        assert!(bad.unwrap_err().to_string().contains("moon"));
    }

    #[test]
    fn console_access_settings_are_read_and_checked() {
        let text = "[console]\nrevoked = \"/etc/synapse/revoked.txt\"\naudit_keep = 500\n";
        let config = HubConfig::parse(text, "hub.toml").unwrap();
        assert_eq!(
            config.console.revoked.as_deref(),
            Some(Path::new("/etc/synapse/revoked.txt"))
        );
        assert_eq!(config.console.audit_keep, 500);
        let bad = HubConfig::parse("[console]\naudit_keep = 0\n", "hub.toml").unwrap_err();
        assert!(bad.to_string().contains("audit_keep = 0"), "{bad}");
    }

    #[test]
    fn durations_are_human_readable() {
        let config = HubConfig::parse("[link]\nheartbeat_interval = \"250ms\"\n", "x").unwrap();
        assert_eq!(config.link.heartbeat_interval, Duration::from_millis(250));
    }
}

/// The packages install `hub.example.toml` as `/etc/synapse/hub.toml`. Its values are pinned
/// to the defaults above; here every key the hub accepts must be in it, so a new field fails
/// until the file shows it. The accepted keys come from the hub's own refusal of an unknown one.
#[cfg(test)]
mod shipped_file {
    use std::collections::BTreeSet;

    use super::HubConfig;

    const SHIPPED: &str = include_str!("../hub.example.toml");

    /// serde refuses an unknown key with "unknown field `k`, expected one of `a`, `b`, ...".
    fn accepted_keys(header: &str) -> BTreeSet<String> {
        let probe = format!("{header}\nnot_a_key = 0\n");
        let err = HubConfig::parse(&probe, "probe").unwrap_err().to_string();
        assert!(err.contains("unknown field `not_a_key`"), "{header}: {err}");
        err.split('`')
            .skip(3)
            .step_by(2)
            .map(String::from)
            .collect()
    }

    /// Keys shown commented out (`# key = value`) under `header`: settings without a default
    /// value, such as a file to read.
    fn commented_keys(header: &str) -> BTreeSet<String> {
        let mut current = String::new();
        let mut keys = BTreeSet::new();
        for line in SHIPPED.lines() {
            if line.starts_with('[') {
                current = line.trim().to_owned();
            } else if let Some((key, _)) = line
                .strip_prefix("# ")
                .and_then(|rest| rest.split_once(" = "))
                && current == header
                && key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
            {
                keys.insert(key.to_owned());
            }
        }
        keys
    }

    /// Checks the keys of `table` (at `path`, e.g. `rollouts.gates`) and of its sub-tables.
    fn check_keys(path: &str, table: &toml::Table) {
        let header = if path.is_empty() {
            String::new()
        } else {
            format!("[{path}]")
        };
        let accepted = accepted_keys(&header);
        let keys: BTreeSet<String> = table
            .keys()
            .cloned()
            .chain(
                commented_keys(&header)
                    .into_iter()
                    .filter(|k| accepted.contains(k)),
            )
            .collect();
        assert_eq!(keys, accepted, "keys of {header}");
        for (name, value) in table {
            if let toml::Value::Table(inner) = value {
                let inner_path = if path.is_empty() {
                    name.clone()
                } else {
                    format!("{path}.{name}")
                };
                check_keys(&inner_path, inner);
            }
        }
    }

    #[test]
    fn the_shipped_file_shows_every_key_the_hub_accepts() {
        check_keys("", &SHIPPED.parse().unwrap());
    }
}
