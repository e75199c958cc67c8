//! The agent's configuration: a TOML file read with `deny_unknown_fields`, where every field
//! has a default stated here (and in README's configuration reference), so an empty file is a
//! valid configuration. A bad file is refused with its path, line, column and the reason.

use std::{collections::BTreeMap, net::SocketAddr, path::Path, path::PathBuf, time::Duration};

use serde::Deserialize;

mod function;
mod gateway;
mod instances;
mod learning;
mod policy;
#[cfg(test)]
mod shipped_file;

pub use function::{ElementType, FunctionKind, FunctionSpec, TensorInput, TensorOutput, Transform};
pub use gateway::GatewayConfig;
pub use instances::{Account, InstancesConfig};
pub use learning::LearningConfig;
pub use policy::{PolicyChoice, PolicySection};

/// Everything `synapse-agent run` needs.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    pub agent: AgentSection,
    pub telemetry: TelemetryConfig,
    pub metrics: MetricsConfig,
    pub store: StoreConfig,
    pub cgroup: CgroupConfig,
    pub gateway: GatewayConfig,
    /// Who function instances run as (`[instances]`, never root).
    pub instances: InstancesConfig,
    /// The link to the hub; without a `[link]` table the agent runs alone.
    pub link: Option<crate::link::LinkConfig>,
    /// Functions the agent runs, each behind the gateway with its warm pool.
    pub functions: Vec<FunctionSpec>,
    /// Cgroups started by other runtimes that the agent watches as functions.
    pub watch: Vec<WatchSpec>,
    /// Federated training of the neural forecaster (`[learning]`).
    pub learning: LearningConfig,
    /// Cross-tier placement (used with a `[link]`).
    pub placement: crate::placement::PlacementConfig,
    /// The warm-pool policy of every function.
    pub policy: PolicySection,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Edge,
    Regional,
    Cloud,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentSection {
    /// Agent id; empty means the host name.
    pub id: String,
    /// Tier of this host. Default `edge`.
    pub tier: Tier,
    /// Where the agent keeps its state (sled store). Default `/var/lib/synapse-agent`.
    pub state_dir: PathBuf,
    /// Labels told to the hub (region, zone, ...). Default none.
    pub labels: BTreeMap<String, String>,
}

impl Default for AgentSection {
    fn default() -> Self {
        Self {
            id: String::new(),
            tier: Tier::Edge,
            state_dir: PathBuf::from("/var/lib/synapse-agent"),
            labels: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// Length of one telemetry interval. Default 60 s; from 1 s to 1 h.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Size of the lifecycle ring buffer in bytes (a power of two, at least 4096). Default 256 KiB.
    pub ring_buffer_bytes: u32,
    /// Print a table of every function's telemetry on stdout at the end of each interval.
    pub print: bool,
    /// Keep the kernel's BPF run-time statistics on while the agent runs
    /// (`kernel.bpf_stats_enabled`), exported as `synapse_ebpf_program_*`. Default true.
    pub bpf_stats: bool,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(60),
            ring_buffer_bytes: synapse_agent_ebpf::DEFAULT_RING_BYTES,
            print: false,
            bpf_stats: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Address of the Prometheus endpoint (`/metrics`) and the telemetry API
    /// (`/v1/telemetry`). Default `127.0.0.1:9464`.
    pub listen: SocketAddr,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// How long per-interval records are kept. Default 24 h.
    #[serde(with = "humantime_serde")]
    pub raw_retention: Duration,
    /// How long the hourly roll-ups of those records are kept. Default 30 days.
    #[serde(with = "humantime_serde")]
    pub hourly_retention: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            raw_retention: Duration::from_secs(24 * 3600),
            hourly_retention: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CgroupConfig {
    /// Mount point of the cgroup v2 hierarchy; empty means found in the mount table.
    pub v2_mount: Option<PathBuf>,
    /// Folder of the agent's instance cgroups, relative to the v2 mount (and to the v1 memory
    /// controller's mount on hybrid hosts). Default `synapse`.
    pub subtree: String,
}

impl Default for CgroupConfig {
    fn default() -> Self {
        Self {
            v2_mount: None,
            subtree: "synapse".into(),
        }
    }
}

/// A cgroup of another runtime, counted as a function.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchSpec {
    pub function: String,
    /// Absolute path of the cgroup (v2) directory.
    pub cgroup: PathBuf,
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {reason}")]
    Syntax {
        path: String,
        line: usize,
        column: usize,
        reason: String,
    },
    #[error("{path}: {field}: {reason}")]
    Invalid {
        path: String,
        field: String,
        reason: String,
    },
}

impl AgentConfig {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses and validates configuration text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text).map_err(|e| {
            let (line, column) = e
                .span()
                .map(|span| line_column(text, span.start))
                .unwrap_or((1, 1));
            ConfigError::Syntax {
                path: origin.to_string(),
                line,
                column,
                reason: e.message().trim().to_string(),
            }
        })?;
        config
            .validate()
            .map_err(|(field, reason)| ConfigError::Invalid {
                path: origin.to_string(),
                field,
                reason,
            })?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), (String, String)> {
        let t = &self.telemetry;
        if t.interval < Duration::from_secs(1) || t.interval > Duration::from_secs(3600) {
            return Err((
                "telemetry.interval".into(),
                format!(
                    "must be between 1s and 1h, got {}",
                    humantime::format_duration(t.interval)
                ),
            ));
        }
        if !t.ring_buffer_bytes.is_power_of_two() || t.ring_buffer_bytes < 4096 {
            return Err((
                "telemetry.ring_buffer_bytes".into(),
                format!(
                    "must be a power of two of at least 4096, got {}",
                    t.ring_buffer_bytes
                ),
            ));
        }
        self.gateway.check(
            self.link.is_some(),
            self.metrics.listen,
            self.functions.iter().map(|f| f.name.as_str()),
        )?;
        // The agent removes what it finds under its subtree at start: an absolute path would
        // point that clean-up at any folder of the hierarchy.
        let subtree = &self.cgroup.subtree;
        if subtree.is_empty()
            || subtree.contains("..")
            || std::path::Path::new(subtree).is_absolute()
        {
            return Err((
                "cgroup.subtree".into(),
                "must be a non-empty relative folder without `..`".into(),
            ));
        }
        if let Some(reason) = synapse_link::names::labels_refusal(self.agent.labels.iter()) {
            // The hub refuses a hello whose labels break the same rule.
            return Err(("agent.labels".into(), reason));
        }
        if let Some(link) = &self.link {
            link.check()?;
        }
        let mut names = std::collections::BTreeSet::new();
        let all_names = self
            .functions
            .iter()
            .map(|f| ("functions", &f.name))
            .chain(self.watch.iter().map(|w| ("watch", &w.function)));
        for (i, (section, name)) in all_names.enumerate() {
            if !valid_name(name) {
                return Err((
                    format!("{section}.name"),
                    format!(
                        "`{name}` is not a valid function name (letters, digits, `-`, `_`, `.`; at most 64)"
                    ),
                ));
            }
            if !names.insert(name.clone()) {
                return Err((
                    format!("{section}[{i}].name"),
                    format!("`{name}` is defined twice"),
                ));
            }
        }
        if names.len() > synapse_agent_ebpf::MAX_FUNCTIONS as usize {
            return Err(("functions".into(), "too many functions".into()));
        }
        self.instances.check(self.functions.len())?;
        for (index, f) in self.functions.iter().enumerate() {
            let field = |name: &str| format!("functions.{}.{name}", f.name);
            f.check_isolation(&self.instances, index as u32)
                .map_err(|(name, reason)| (field(name), reason))?;
            if f.kind == FunctionKind::Process && f.command.is_none() {
                return Err((
                    field("command"),
                    "a process function needs a command".into(),
                ));
            }
            if f.kind == FunctionKind::Onnx {
                if f.model.is_none() {
                    return Err((field("model"), "an onnx function needs a model file".into()));
                }
                // The model runs inside the agent: a file replaced on disk must be refused,
                // not served.
                if f.model_sha256.is_none() {
                    return Err((
                        field("model_sha256"),
                        "an onnx function needs its model file's SHA-256 (`sha256sum FILE`)".into(),
                    ));
                }
                if f.inputs.is_empty() || f.outputs.is_empty() {
                    return Err((
                        field("inputs"),
                        "an onnx function needs its inputs and outputs".into(),
                    ));
                }
                if f.batch_size == 0 {
                    return Err((field("batch_size"), "must be at least 1".into()));
                }
            }
            if f.concurrency == 0 {
                return Err((field("concurrency"), "must be at least 1".into()));
            }
            if f.max_instances == 0 || f.min_warm > f.max_instances {
                return Err((
                    field("max_instances"),
                    format!("must be at least 1 and at least min_warm ({})", f.min_warm),
                ));
            }
            if f.keep_alive_min > f.keep_alive_max {
                return Err((
                    field("keep_alive_min"),
                    "must not exceed keep_alive_max".into(),
                ));
            }
            if f.memory_mb == Some(0) {
                return Err((field("memory_mb"), "must be at least 1".into()));
            }
            if let Some(hash) = &f.model_sha256
                && (hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()))
            {
                return Err((
                    field("model_sha256"),
                    format!("must be 64 hexadecimal digits (a SHA-256), got {hash:?}"),
                ));
            }
            for (name, value) in [
                ("invocation_timeout", f.invocation_timeout),
                ("ready_timeout", f.ready_timeout),
            ] {
                if value.is_zero() {
                    return Err((field(name), "must be longer than 0s".into()));
                }
            }
        }
        self.policy.validate()?;
        for w in &self.watch {
            if !w.cgroup.is_absolute() {
                return Err((
                    format!("watch.{}.cgroup", w.function),
                    "must be an absolute path".into(),
                ));
            }
        }
        Ok(())
    }

    /// The agent id: the configured one, else the host name.
    pub fn agent_id(&self) -> String {
        if !self.agent.id.is_empty() {
            return self.agent.id.clone();
        }
        sysinfo::System::host_name().unwrap_or_else(|| "agent".into())
    }
}

/// Checks one function's spec as the configuration file's functions are checked (for specs
/// that arrive later, by rollout); the error names the field.
pub fn check_function(spec: &FunctionSpec) -> Result<(), String> {
    let config = AgentConfig {
        functions: vec![spec.clone()],
        ..AgentConfig::default()
    };
    config
        .validate()
        .map_err(|(field, reason)| format!("{field}: {reason}"))
}

/// A function name, as the hub also checks it ([`synapse_link::names`]).
pub fn valid_name(name: &str) -> bool {
    synapse_link::names::is_function_name(name)
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1)
        + 1;
    (line, column)
}

#[cfg(test)]
#[path = "mod_tests.rs"]
mod tests;
