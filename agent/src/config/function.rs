//! A function's specification: how it runs (a process or an ONNX model), the bounds of its
//! warm pool and of its invocations. Every default is stated next to its field.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use serde::Deserialize;

/// How a function runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FunctionKind {
    /// A program that speaks HTTP/1.1 on the address it is given.
    #[default]
    Process,
    /// An ONNX model served inside the agent with tract (a stateless serving function).
    Onnx,
}

/// Element type of a model input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ElementType {
    F32,
    F64,
    I32,
    I64,
}

/// One input of an ONNX function's signature.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TensorInput {
    pub name: String,
    /// Shape of one row, without the batch dimension (which comes first in the model).
    pub shape: Vec<usize>,
    #[serde(default = "f32_type")]
    pub dtype: ElementType,
}

fn f32_type() -> ElementType {
    ElementType::F32
}

/// What is applied to an output row before it is returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transform {
    #[default]
    None,
    Sigmoid,
    Softmax,
}

/// One output of an ONNX function's signature.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TensorOutput {
    pub name: String,
    #[serde(default)]
    pub transform: Transform,
}

/// A function: how to run it, and the bounds of its warm pool and of its invocations.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionSpec {
    /// Name, unique on this agent: letters, digits, `-`, `_`, `.`.
    pub name: String,
    /// Version label of the spec. Default `1`.
    #[serde(default = "default_version")]
    pub version: String,
    /// `process` (default).
    #[serde(default)]
    pub kind: FunctionKind,
    /// Program to execute (kind `process`).
    pub command: Option<PathBuf>,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub working_dir: Option<PathBuf>,
    /// ONNX file (kind `onnx`).
    pub model: Option<PathBuf>,
    /// Expected SHA-256 of the ONNX file, hex; a mismatch refuses to load it. Default: unchecked.
    pub model_sha256: Option<String>,
    /// Inputs of the model, in its order (kind `onnx`).
    #[serde(default)]
    pub inputs: Vec<TensorInput>,
    /// Outputs returned, by name (kind `onnx`).
    #[serde(default)]
    pub outputs: Vec<TensorOutput>,
    /// Most rows run together by one ONNX instance. Default 8.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// How long an ONNX instance waits for more requests to fill a batch. Default 2 ms.
    #[serde(default = "default_batch_wait", with = "humantime_serde")]
    pub batch_wait: Duration,
    /// Memory limit of each instance in MiB, applied through its cgroup (kind `process`).
    /// Default: none.
    pub memory_mb: Option<u64>,
    /// Account its instances run as: a user name or a uid, never root (kind `process`).
    /// Default: `[instances] user`, else a uid of its own from `[instances] uid_range`.
    #[serde(default, deserialize_with = "super::instances::user_name_or_id")]
    pub user: Option<String>,
    /// Most processes and threads in each instance (cgroup `pids.max`), 1 ..= 4194304
    /// (kind `process`). Default 256.
    #[serde(default = "default_pids_max")]
    pub pids_max: u64,
    /// CPU time each instance may use, in CPUs (0.5 is half of one CPU, 2 two CPUs; cgroup
    /// `cpu.max`, or `cpu.cfs_quota_us` on v1), 0.01 ..= 4096 (kind `process`). Default:
    /// unlimited.
    pub cpu: Option<f64>,
    /// Invocations one instance serves at once. Default 1.
    #[serde(default = "one")]
    pub concurrency: u32,
    /// Ready instances kept at least, whatever the policy says. Default 0.
    #[serde(default)]
    pub min_warm: u32,
    /// Instances at most (starting, ready or busy). Default 8.
    #[serde(default = "default_max_instances")]
    pub max_instances: u32,
    /// Keep-alive of an idle instance under the fixed policy. Default 10 min.
    #[serde(default = "default_keep_alive", with = "humantime_serde")]
    pub keep_alive: Duration,
    /// Bounds on any policy's keep-alive. Default 0 s and 1 h.
    #[serde(default, with = "humantime_serde")]
    pub keep_alive_min: Duration,
    #[serde(default = "default_keep_alive_max", with = "humantime_serde")]
    pub keep_alive_max: Duration,
    /// Longest time one invocation may take before the gateway answers 504. Default 30 s.
    #[serde(default = "default_invocation_timeout", with = "humantime_serde")]
    pub invocation_timeout: Duration,
    /// Longest time a new instance may take to listen before it is killed. Default 30 s.
    #[serde(default = "default_invocation_timeout", with = "humantime_serde")]
    pub ready_timeout: Duration,
    /// Largest request body, bytes; larger ones get 413. Default 1 MiB.
    #[serde(default = "default_max_request_bytes")]
    pub max_request_bytes: usize,
    /// Invocations that may wait for an instance; more get 503. Default 64.
    #[serde(default = "default_queue_limit")]
    pub queue_limit: usize,
    /// Longest wait for an instance; then 503 with `Retry-After`. Default 10 s.
    #[serde(default = "default_queue_timeout", with = "humantime_serde")]
    pub queue_timeout: Duration,
}

/// Highest `pids_max`: the kernel's own limit on pids (`PID_MAX_LIMIT`).
pub const MAX_PIDS: u64 = 4_194_304;
/// Bounds of `cpu`: the kernel refuses quotas under 1 ms per 100 ms period.
pub const CPU_RANGE: std::ops::RangeInclusive<f64> = 0.01..=4096.0;

impl FunctionSpec {
    /// The cgroup limits of its instances.
    pub fn limits(&self) -> crate::cgroup::Limits {
        crate::cgroup::Limits {
            memory_mb: self.memory_mb,
            pids_max: Some(self.pids_max),
            cpu_quota_us: self
                .cpu
                .map(|cpus| (cpus * crate::cgroup::CPU_PERIOD_US as f64).round() as u64),
        }
    }

    /// Checks the isolation settings: `user` resolves to an account that is not root (or,
    /// without one, the function's uid of `[instances] uid_range` is no account's),
    /// `pids_max` and `cpu` in range. The error names the field (without the function).
    /// `index` is the function's among the configured ones (its uid when it has no user).
    pub fn check_isolation(
        &self,
        instances: &super::InstancesConfig,
        index: u32,
    ) -> Result<(), (&'static str, String)> {
        if let Some(user) = &self.user {
            instances.check_user(user).map_err(|e| ("user", e))?;
        } else if self.kind == FunctionKind::Process && instances.user.is_none() {
            instances.account(None, index).map_err(|e| ("user", e))?;
        }
        if !(1..=MAX_PIDS).contains(&self.pids_max) {
            return Err((
                "pids_max",
                format!("must be between 1 and {MAX_PIDS}, got {}", self.pids_max),
            ));
        }
        if let Some(cpu) = self.cpu
            && !CPU_RANGE.contains(&cpu)
        {
            return Err((
                "cpu",
                format!(
                    "must be a number of CPUs between {} and {}, got {cpu}",
                    CPU_RANGE.start(),
                    CPU_RANGE.end()
                ),
            ));
        }
        Ok(())
    }
}

fn default_pids_max() -> u64 {
    256
}
fn one() -> u32 {
    1
}
fn default_version() -> String {
    "1".into()
}
fn default_batch_size() -> usize {
    8
}
fn default_batch_wait() -> Duration {
    Duration::from_millis(2)
}
fn default_max_instances() -> u32 {
    8
}
fn default_keep_alive() -> Duration {
    Duration::from_secs(600)
}
fn default_keep_alive_max() -> Duration {
    Duration::from_secs(3600)
}
fn default_invocation_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_max_request_bytes() -> usize {
    1 << 20
}
fn default_queue_limit() -> usize {
    64
}
fn default_queue_timeout() -> Duration {
    Duration::from_secs(10)
}

#[cfg(test)]
mod tests {
    use super::super::AgentConfig;

    fn parse(extra: &str) -> Result<AgentConfig, String> {
        let text = format!("[[functions]]\nname = \"f\"\ncommand = \"/bin/x\"\n{extra}\n");
        AgentConfig::parse(&text, "a.toml").map_err(|e| e.to_string())
    }

    #[test]
    fn isolation_defaults_are_256_pids_no_cpu_limit_and_a_uid_of_the_range() {
        let c = parse("").unwrap();
        let f = &c.functions[0];
        assert_eq!((f.user.as_deref(), f.pids_max, f.cpu), (None, 256, None));
        let limits = f.limits();
        assert_eq!((limits.pids_max, limits.cpu_quota_us), (Some(256), None));
        assert_eq!(c.instances.account(None, 0).unwrap().uid, 61_000);
        let half = parse("cpu = 0.5\npids_max = 32").unwrap().functions[0].limits();
        assert_eq!((half.pids_max, half.cpu_quota_us), (Some(32), Some(50_000)));
        let two = parse("cpu = 2").unwrap().functions[0].limits();
        assert_eq!(two.cpu_quota_us, Some(200_000));
    }

    #[test]
    fn users_are_resolved_when_the_configuration_is_checked() {
        // `nobody` is in every user database; as a number too, quoted or not.
        for user in ["\"nobody\"", "\"65534\"", "65534"] {
            let c = parse(&format!("user = {user}")).unwrap();
            assert_eq!(
                c.instances
                    .account(c.functions[0].user.as_deref(), 0)
                    .unwrap()
                    .uid,
                65_534
            );
        }
        for (user, expected) in [
            ("\"root\"", "functions.f.user: `root` is root"),
            ("0", "functions.f.user: `0` is root"),
            (
                "\"no-such-user-x\"",
                "functions.f.user: no user `no-such-user-x`",
            ),
            (
                "\"61001\"",
                "functions.f.user: uid 61001 of `61001` is in instances.uid_range",
            ),
            ("-1", "expected a user name or a uid"),
        ] {
            let err = parse(&format!("user = {user}")).unwrap_err();
            assert!(err.contains(expected), "{user}: {err}");
        }
        let err = AgentConfig::parse("[instances]\nuser = \"root\"\n", "a.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("instances.user: `root` is root"), "{err}");
    }

    #[test]
    fn pids_and_cpu_out_of_range_are_refused() {
        for (extra, expected) in [
            (
                "pids_max = 0",
                "functions.f.pids_max: must be between 1 and 4194304, got 0",
            ),
            ("pids_max = 4194305", "functions.f.pids_max"),
            (
                "cpu = 0.0",
                "functions.f.cpu: must be a number of CPUs between 0.01 and 4096",
            ),
            ("cpu = -1.0", "functions.f.cpu"),
            ("cpu = nan", "functions.f.cpu"),
            ("cpu = inf", "functions.f.cpu"),
            ("cpu = 4097", "functions.f.cpu"),
        ] {
            let err = parse(extra).unwrap_err();
            assert!(err.contains(expected), "{extra}: {err}");
        }
        assert!(parse("pids_max = 1\ncpu = 0.01").is_ok());
        assert!(parse("pids_max = 4194304\ncpu = 4096").is_ok());
    }

    #[test]
    fn a_uid_range_smaller_than_the_functions_is_refused() {
        let text = "[instances]\nuid_range = [61000, 61000]\n\
                    [[functions]]\nname = \"a\"\ncommand = \"/bin/x\"\n\
                    [[functions]]\nname = \"b\"\ncommand = \"/bin/x\"\n";
        let err = AgentConfig::parse(text, "a.toml").unwrap_err().to_string();
        assert!(
            err.contains("instances.uid_range: holds 1 uids but 2 functions"),
            "{err}"
        );
    }
}
