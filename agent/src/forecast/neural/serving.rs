//! The model in service, hot-swappable: a [`ModelHandle`] holds an `Arc` of the current
//! [`ServingModel`]; readers take the `Arc` and keep it for the whole of their forecast, so a
//! swap never changes the model under a forecast in flight — it finishes on the old one, and
//! the next forecast takes the new one.
//!
//! A version only enters service through [`ServingModel::load`]: its bytes must be an ONNX
//! file of this architecture that tract loads and whose output equals the Rust forward pass.

use std::sync::{Arc, RwLock};

use super::{
    mlp::{INPUTS, MlpModel},
    onnx::{self, OnnxError},
    runner::{RunnerError, TractRunner},
};

/// Tolerance between tract's output and the Rust forward pass on the probe batch.
const AGREEMENT: f64 = 1e-4;

/// Why a model file cannot enter service.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("not a forecaster ONNX file: {0}")]
    Onnx(#[from] OnnxError),
    #[error("tract cannot run it: {0}")]
    Tract(#[from] RunnerError),
    #[error("tract's output {tract} differs from the forward pass {rust} on the probe input")]
    Disagreement { tract: f32, rust: f64 },
}

/// One loaded version of the neural forecaster.
pub struct ServingModel {
    /// The hub's version number; 0 for the model the agent ships with.
    pub version: u64,
    /// Hex SHA-256 of the ONNX file.
    pub sha256: String,
    /// The weights, for the Rust passes (training, per-function forecasts).
    pub mlp: Arc<MlpModel>,
    /// The same weights run by tract, for batch inference.
    pub runner: TractRunner,
}

impl std::fmt::Debug for ServingModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServingModel")
            .field("version", &self.version)
            .field("sha256", &self.sha256)
            .finish_non_exhaustive()
    }
}

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl ServingModel {
    /// Decodes, loads with tract and cross-checks the ONNX file `bytes` as `version`.
    pub fn load(version: u64, bytes: &[u8]) -> Result<Self, LoadError> {
        let mlp = onnx::decode(bytes)?;
        let runner = TractRunner::from_onnx(bytes)?;
        let probe: Vec<[f32; INPUTS]> = (0..4u32)
            .map(|k| {
                let recent: Vec<f64> = (0..60u32).map(|m| f64::from((m * (k + 1)) % 9)).collect();
                super::mlp::features(&recent, k * 360)
            })
            .collect();
        for (x, tract) in probe.iter().zip(runner.run(&probe)?) {
            let rust = mlp.forward(x);
            if (f64::from(tract) - rust).abs() > AGREEMENT * (1.0 + rust.abs()) {
                return Err(LoadError::Disagreement { tract, rust });
            }
        }
        Ok(Self {
            version,
            sha256: sha256_hex(bytes),
            mlp: Arc::new(mlp),
            runner,
        })
    }
}

/// The shared, swappable model of this agent; cheap to clone.
#[derive(Clone, Debug)]
pub struct ModelHandle(Arc<RwLock<Arc<ServingModel>>>);

impl ModelHandle {
    pub fn new(model: ServingModel) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(model))))
    }

    /// The model the agent ships with (pretrained on synthetic demand), as version 0.
    pub fn factory() -> Result<Self, LoadError> {
        Ok(Self::new(ServingModel::load(
            0,
            crate::policy::live::BUILT_IN_MODEL,
        )?))
    }

    /// The model in service now; hold it for the length of one forecast.
    pub fn current(&self) -> Arc<ServingModel> {
        self.0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Puts `model` in service (a loaded version, or one held already); returns the one it
    /// replaced.
    pub fn install(&self, model: impl Into<Arc<ServingModel>>) -> Arc<ServingModel> {
        let mut slot = self
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        std::mem::replace(&mut *slot, model.into())
    }
}

#[cfg(test)]
mod tests {
    use super::super::train;
    use super::*;

    fn file(steps: usize) -> Vec<u8> {
        onnx::encode(&train::pretrain(&train::PretrainConfig {
            steps,
            ..train::PretrainConfig::default()
        }))
    }

    #[test]
    fn a_forecast_in_flight_finishes_on_the_model_it_started_with() {
        let handle = ModelHandle::new(ServingModel::load(1, &file(5)).unwrap());
        let in_flight = handle.current();
        let old = handle.install(ServingModel::load(2, &file(50)).unwrap());
        assert_eq!(old.version, 1);
        assert_eq!(in_flight.version, 1, "the held model did not change");
        assert_eq!(
            handle.current().version,
            2,
            "the next forecast takes the new one"
        );
    }

    #[test]
    fn a_corrupt_file_does_not_load() {
        let mut bytes = file(5);
        let cut = bytes.len() / 2;
        bytes.truncate(cut);
        assert!(ServingModel::load(3, &bytes).is_err());
        assert!(ServingModel::load(3, b"\x08\x07garbage").is_err());
    }
}
