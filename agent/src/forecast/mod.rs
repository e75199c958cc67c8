//! Demand forecasters: per function, the invocations expected in each of the next minutes.
//!
//! Every forecaster is plain synchronous code behind one trait, [`Forecaster`]: it is fed one
//! completed minute at a time ([`MinuteCount`]) and forecasts from what it has been fed, so it
//! sees only the past, does no I/O and reads no clock. The live agent feeds it minutes measured
//! in the kernel; `synapse-agent replay` feeds it minutes of a recorded trace — the same code.

pub mod arima;
pub mod error;
pub mod histogram;
pub mod holt_winters;
pub mod hybrid;
pub mod neural;

use serde::{Deserialize, Serialize};

pub use arima::{Arima, ArimaConfig};
pub use error::{ForecastAccuracy, ForecastErrorTracker};
pub use histogram::{HistogramConfig, IdleTimeHistogram};
pub use holt_winters::{HoltWinters, HoltWintersConfig};
pub use hybrid::{Hybrid, HybridConfig};
pub use neural::{MlpForecaster, MlpModel, ModelSource};

/// One completed minute of a function's demand.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MinuteCount {
    /// Minute of the day (0..1440) the count belongs to; neural features use it.
    pub minute_of_day: u32,
    /// Invocations that started in that minute.
    pub invocations: f64,
}

/// A per-function demand forecaster.
pub trait Forecaster: Send {
    /// Short stable name (`holt-winters`, `arima`, …) used in reports and metrics.
    fn name(&self) -> &'static str;
    /// Feeds the next completed minute.
    fn observe(&mut self, minute: MinuteCount);
    /// Expected invocations in the next minute (never negative).
    fn forecast_next(&self) -> f64;
    /// Expected invocations in each of the next `horizon` minutes. The default repeats the
    /// one-step forecast; models with structure (trend, season) override it.
    fn forecast(&self, horizon: usize) -> Vec<f64> {
        vec![self.forecast_next(); horizon]
    }
}

/// Which forecaster a policy uses; each has its own config section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ForecasterKind {
    /// [`IdleTimeHistogram`] read as a next-minute rate.
    Histogram,
    /// [`HoltWinters`].
    HoltWinters,
    /// [`Arima`].
    Arima,
    /// [`MlpForecaster`] (weights from the ONNX model).
    Mlp,
    /// [`Hybrid`] of the above with configured weights.
    Hybrid,
}

impl ForecasterKind {
    /// Every kind, in report order.
    pub const ALL: [ForecasterKind; 5] = [
        ForecasterKind::Histogram,
        ForecasterKind::HoltWinters,
        ForecasterKind::Arima,
        ForecasterKind::Mlp,
        ForecasterKind::Hybrid,
    ];

    /// The kebab-case name used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            ForecasterKind::Histogram => "histogram",
            ForecasterKind::HoltWinters => "holt-winters",
            ForecasterKind::Arima => "arima",
            ForecasterKind::Mlp => "mlp",
            ForecasterKind::Hybrid => "hybrid",
        }
    }

    /// Parses a kebab-case name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

/// Settings of every forecaster, one section each.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ForecastConfig {
    pub histogram: HistogramConfig,
    pub holt_winters: HoltWintersConfig,
    pub arima: ArimaConfig,
    pub hybrid: HybridConfig,
}

/// Builds a fresh forecaster of `kind` for one function. `model` is the neural model shared by
/// every function (its weights come from one ONNX file).
pub fn build(
    kind: ForecasterKind,
    config: &ForecastConfig,
    model: &neural::ModelSource,
) -> Box<dyn Forecaster> {
    match kind {
        ForecasterKind::Histogram => Box::new(IdleTimeHistogram::new(config.histogram.clone())),
        ForecasterKind::HoltWinters => Box::new(HoltWinters::new(config.holt_winters.clone())),
        ForecasterKind::Arima => Box::new(Arima::new(config.arima.clone())),
        ForecasterKind::Mlp => Box::new(MlpForecaster::new(model.clone())),
        ForecasterKind::Hybrid => Box::new(Hybrid::from_config(config, model)),
    }
}
