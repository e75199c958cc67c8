//! The neural forecaster: a small MLP of fixed architecture ([`mlp`]) whose weights live in an
//! ONNX file ([`onnx`]) run by tract ([`runner`]), with a Rust forward and backward pass for
//! the same architecture and a synthetic pretraining ([`train`]) that produces the first model.
//! [`serving`] keeps the version in service swappable while forecasts run.

pub mod mlp;
pub mod onnx;
pub mod runner;
pub mod serving;
pub mod train;

use std::collections::VecDeque;
use std::sync::Arc;

pub use mlp::MlpModel;
pub use runner::TractRunner;
pub use serving::{ModelHandle, ServingModel};

use super::{Forecaster, MinuteCount};

/// The model a fresh agent starts with: pretrained on synthetic demand with the default seed,
/// written to ONNX and read back, so its weights are exactly those of its ONNX file.
pub fn default_model() -> Result<(MlpModel, Vec<u8>), onnx::OnnxError> {
    let bytes = onnx::encode(&train::pretrain(&train::PretrainConfig::default()));
    Ok((onnx::decode(&bytes)?, bytes))
}

/// The weights a forecaster reads: fixed (the replay, an agent that does not learn), or the
/// agent's model in service, so that every forecast after a swap takes the new version.
#[derive(Debug, Clone)]
pub enum ModelSource {
    Fixed(Arc<MlpModel>),
    Served(ModelHandle),
}

impl ModelSource {
    /// The weights for one forecast.
    pub fn current(&self) -> Arc<MlpModel> {
        match self {
            Self::Fixed(model) => model.clone(),
            Self::Served(handle) => handle.current().mlp.clone(),
        }
    }

    /// The version the next forecast runs: the hub's number of the version in service, 0
    /// for the agent's own model (a fixed one is always the agent's own).
    pub fn version(&self) -> u64 {
        match self {
            Self::Fixed(_) => 0,
            Self::Served(handle) => handle.current().version,
        }
    }
}

impl From<Arc<MlpModel>> for ModelSource {
    fn from(model: Arc<MlpModel>) -> Self {
        Self::Fixed(model)
    }
}

/// One function's view of the shared model: the last hour of its counts.
#[derive(Debug, Clone)]
pub struct MlpForecaster {
    model: ModelSource,
    recent: VecDeque<f64>,
    next_minute_of_day: u32,
}

impl MlpForecaster {
    /// A forecaster over the shared `model` that has seen nothing yet.
    pub fn new(model: impl Into<ModelSource>) -> Self {
        Self {
            model: model.into(),
            recent: VecDeque::with_capacity(60),
            next_minute_of_day: 0,
        }
    }

    /// The model's input for the next minute.
    pub fn features(&self) -> [f32; mlp::INPUTS] {
        let (a, b) = self.recent.as_slices();
        let recent: Vec<f64> = a.iter().chain(b).copied().collect();
        mlp::features(&recent, self.next_minute_of_day)
    }
}

impl Forecaster for MlpForecaster {
    fn name(&self) -> &'static str {
        "mlp"
    }

    fn observe(&mut self, minute: MinuteCount) {
        if self.recent.len() == 60 {
            self.recent.pop_front();
        }
        self.recent.push_back(minute.invocations);
        self.next_minute_of_day = (minute.minute_of_day + 1) % 1440;
    }

    fn forecast_next(&self) -> f64 {
        mlp::to_count(self.model.current().forward(&self.features()))
    }
}
