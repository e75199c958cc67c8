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
