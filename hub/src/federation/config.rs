//! The `[federation]` section of the hub's configuration: how rounds are run and how their
//! gradients become a new model version. Every field has the default stated here.

use std::{path::PathBuf, time::Duration};

use serde::Deserialize;

use super::{aggregate::Aggregator, optimizer::OptimizerKind};

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FederationConfig {
    /// Run training rounds at all. Default true (rounds start once a model is registered).
    pub enabled: bool,
    /// The first model version, an ONNX file (e.g. written by `synapse-agent model export`);
    /// read once, when the registry is empty. Default none: no rounds until a model exists.
    pub initial_model: Option<PathBuf>,
    /// Time from the opening of one round to the opening of the next. Default `10m`.
    #[serde(with = "humantime_serde")]
    pub round_interval: Duration,
    /// Gradients a round needs to produce a version; with fewer at its deadline it is
    /// abandoned. Rounds are only opened with at least this many agents connected. Default 2.
    pub min_clients: usize,
    /// Time agents have to answer a round. Default `2m`.
    #[serde(with = "humantime_serde")]
    pub round_timeout: Duration,
    /// How many versions older than the round's a gradient's model may be. Default 1.
    pub staleness_bound: u64,
    /// `mean` (sample-weighted, FedAvg), `trimmed-mean` or `median`. Default `mean`.
    pub aggregator: Aggregator,
    /// Fraction trimmed at each end by `trimmed-mean`. Default 0.1.
    pub trim_fraction: f64,
    /// Each client's gradient is scaled to at most this L2 norm; 0 disables. Default 10.
    pub clip_norm: f64,
    /// Gaussian noise multiplier (differential privacy): the aggregate gets noise of standard
    /// deviation `dp_noise_sigma * clip_norm / clients`; 0 disables. Default 0.
    pub dp_noise_sigma: f64,
    /// `sgd-momentum` or `adam`. Default `adam`.
    pub optimizer: OptimizerKind,
    /// Optimizer step size. Default 0.001.
    pub learning_rate: f64,
    /// SGD momentum, or Adam's first-moment decay (beta1). Default 0.9.
    pub momentum: f64,
    /// Bytes of ONNX file per model chunk frame (capped below the link's maximum frame size).
    /// Default 65536.
    pub chunk_bytes: usize,
}

impl Default for FederationConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            initial_model: None,
            round_interval: Duration::from_secs(600),
            min_clients: 2,
            round_timeout: Duration::from_secs(120),
            staleness_bound: 1,
            aggregator: Aggregator::Mean,
            trim_fraction: 0.1,
            clip_norm: 10.0,
            dp_noise_sigma: 0.0,
            optimizer: OptimizerKind::Adam,
            learning_rate: 0.001,
            momentum: 0.9,
            chunk_bytes: 65536,
        }
    }
}

/// A setting out of its range.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("federation.{field}: {reason}")]
pub struct FederationConfigError {
    pub field: &'static str,
    pub reason: &'static str,
}

impl FederationConfig {
    /// Checks ranges serde cannot express.
    pub fn validate(&self) -> Result<(), FederationConfigError> {
        let fail = |field, reason| Err(FederationConfigError { field, reason });
        if self.min_clients == 0 {
            return fail("min_clients", "must be at least 1");
        }
        if !(0.0..0.5).contains(&self.trim_fraction) {
            return fail("trim_fraction", "must be in [0, 0.5)");
        }
        if !(self.clip_norm.is_finite() && self.clip_norm >= 0.0) {
            return fail("clip_norm", "must be a finite number >= 0");
        }
        if !(self.dp_noise_sigma.is_finite() && self.dp_noise_sigma >= 0.0) {
            return fail("dp_noise_sigma", "must be a finite number >= 0");
        }
        if self.dp_noise_sigma > 0.0 && self.clip_norm == 0.0 {
            return fail("dp_noise_sigma", "needs clipping (clip_norm > 0)");
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return fail("learning_rate", "must be a finite number > 0");
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return fail("momentum", "must be in [0, 1)");
        }
        if self.chunk_bytes < 1024 {
            return fail("chunk_bytes", "must be at least 1024");
        }
        if self.round_timeout.is_zero() || self.round_interval.is_zero() {
            return fail(
                "round_timeout",
                "round_interval and round_timeout must be > 0",
            );
        }
        Ok(())
    }
}
