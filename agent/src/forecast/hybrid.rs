//! The hybrid forecaster: a weighted mean of the idle-time histogram, Holt-Winters, ARIMA and
//! the neural model, with configured weights and, optionally, weights adapted to each
//! component's recent error on this very function (the better a component has lately been for
//! this function, the more it counts).

use serde::{Deserialize, Serialize};

use super::{
    Arima, ForecastConfig, Forecaster, HoltWinters, IdleTimeHistogram, MinuteCount, MlpForecaster,
    ModelSource,
};

/// Settings of the hybrid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HybridConfig {
    /// Weight of the idle-time histogram. Default 1.
    pub histogram_weight: f64,
    /// Weight of Holt-Winters. Default 1.
    pub holt_winters_weight: f64,
    /// Weight of ARIMA. Default 1.
    pub arima_weight: f64,
    /// Weight of the neural model. Default 1.
    pub neural_weight: f64,
    /// Scale each weight by the inverse of the component's recent mean absolute error on the
    /// function. Default true.
    pub adapt_to_error: bool,
    /// Half-life, in minutes, of the recent error used to adapt. Default 30.
    pub error_half_life_minutes: f64,
}

impl Default for HybridConfig {
    fn default() -> Self {
        Self {
            histogram_weight: 1.0,
            holt_winters_weight: 1.0,
            arima_weight: 1.0,
            neural_weight: 1.0,
            adapt_to_error: true,
            error_half_life_minutes: 30.0,
        }
    }
}

struct Component {
    forecaster: Box<dyn Forecaster>,
    weight: f64,
    recent_error: f64,
}

/// The hybrid of one function.
pub struct Hybrid {
    components: Vec<Component>,
    adapt: bool,
    decay: f64,
}

impl Hybrid {
    /// A hybrid of every forecaster with the configured weights.
    pub fn from_config(config: &ForecastConfig, model: &ModelSource) -> Self {
        let h = &config.hybrid;
        let parts: Vec<(Box<dyn Forecaster>, f64)> = vec![
            (
                Box::new(IdleTimeHistogram::new(config.histogram.clone())),
                h.histogram_weight,
            ),
            (
                Box::new(HoltWinters::new(config.holt_winters.clone())),
                h.holt_winters_weight,
            ),
            (Box::new(Arima::new(config.arima.clone())), h.arima_weight),
            (Box::new(MlpForecaster::new(model.clone())), h.neural_weight),
        ];
        Self::new(parts, h.adapt_to_error, h.error_half_life_minutes)
    }

    /// A hybrid of the given forecasters and weights (weights ≤ 0 drop a component).
    pub fn new(parts: Vec<(Box<dyn Forecaster>, f64)>, adapt: bool, half_life: f64) -> Self {
        let components = parts
            .into_iter()
            .filter(|(_, w)| *w > 0.0)
            .map(|(forecaster, weight)| Component {
                forecaster,
                weight,
                recent_error: 0.0,
            })
            .collect();
        Self {
            components,
            adapt,
            decay: 0.5f64.powf(1.0 / half_life.max(1e-9)),
        }
    }

    /// The weights in force now, normalised to sum to one.
    pub fn weights(&self) -> Vec<f64> {
        let raw: Vec<f64> = self
            .components
            .iter()
            .map(|c| {
                if self.adapt {
                    c.weight / (c.recent_error + 0.1)
                } else {
                    c.weight
                }
            })
            .collect();
        let total: f64 = raw.iter().sum();
        raw.iter()
            .map(|w| if total > 0.0 { w / total } else { 0.0 })
            .collect()
    }
}

impl Forecaster for Hybrid {
    fn name(&self) -> &'static str {
        "hybrid"
    }

    fn observe(&mut self, minute: MinuteCount) {
        for c in &mut self.components {
            if self.adapt {
                let error = (c.forecaster.forecast_next() - minute.invocations).abs();
                c.recent_error = self.decay * c.recent_error + (1.0 - self.decay) * error;
            }
            c.forecaster.observe(minute);
        }
    }

    fn forecast_next(&self) -> f64 {
        self.weights()
            .iter()
            .zip(&self.components)
            .map(|(w, c)| w * c.forecaster.forecast_next())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A forecaster that always says the same number.
    struct Constant(f64);
    impl Forecaster for Constant {
        fn name(&self) -> &'static str {
            "constant"
        }
        fn observe(&mut self, _: MinuteCount) {}
        fn forecast_next(&self) -> f64 {
            self.0
        }
    }

    fn minute(n: f64) -> MinuteCount {
        MinuteCount {
            minute_of_day: 0,
            invocations: n,
        }
    }

    #[test]
    fn configured_weights_mix_the_components() {
        let h = Hybrid::new(
            vec![
                (Box::new(Constant(10.0)), 3.0),
                (Box::new(Constant(2.0)), 1.0),
            ],
            false,
            30.0,
        );
        assert!((h.forecast_next() - 8.0).abs() < 1e-12);
    }

    #[test]
    fn adapted_weights_favour_the_component_that_has_been_right() {
        let mut h = Hybrid::new(
            vec![
                (Box::new(Constant(10.0)), 1.0),
                (Box::new(Constant(2.0)), 1.0),
            ],
            true,
            5.0,
        );
        for _ in 0..50 {
            h.observe(minute(2.0));
        }
        let w = h.weights();
        assert!(w[1] > 0.95, "{w:?}");
        assert!((h.forecast_next() - 2.0).abs() < 0.5);
    }
}
