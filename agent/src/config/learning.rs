//! The `[learning]` section: whether and on what this agent takes part in the hub's federated
//! training of the neural forecaster. Every field has the default stated here.

use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LearningConfig {
    /// Answer the hub's training rounds and take the model versions it offers (needs a
    /// `[link]`). Default true.
    pub enabled: bool,
    /// The recent data a round's gradient is computed on: the last telemetry intervals of
    /// every function (one interval is one of the model's minutes). Default `2h`.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// At most this many training pairs per round (evenly thinned beyond). Default 20000.
    pub max_pairs: usize,
}

impl Default for LearningConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            window: Duration::from_secs(2 * 3600),
            max_pairs: 20_000,
        }
    }
}
