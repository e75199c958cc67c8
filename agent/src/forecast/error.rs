//! Forecast error per function — MAPE where it is defined (no actual was zero), sMAPE and MASE
//! otherwise — and its export as the `synapse_forecast_error` Prometheus gauge.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// Running sums of one function's one-step forecast errors.
#[derive(Debug, Clone, Default)]
pub struct ForecastErrorTracker {
    samples: u64,
    zero_actuals: u64,
    abs_pct: f64,
    smape: f64,
    abs_error: f64,
    naive_abs: f64,
    previous_actual: Option<f64>,
}

/// The error measures of one function.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ForecastAccuracy {
    /// Mean absolute percentage error, %; `None` when an actual was zero.
    pub mape: Option<f64>,
    /// Symmetric MAPE, % (0..200); a minute where both are zero counts as exact.
    pub smape: Option<f64>,
    /// Mean absolute scaled error against the previous-minute forecast; `None` when that
    /// naive forecast never erred.
    pub mase: Option<f64>,
    /// Forecasts scored.
    pub samples: u64,
}

impl ForecastAccuracy {
    /// The measure to show first: MAPE where defined, else sMAPE.
    pub fn primary(&self) -> Option<(&'static str, f64)> {
        self.mape
            .map(|v| ("mape", v))
            .or(self.smape.map(|v| ("smape", v)))
    }
}

impl ForecastErrorTracker {
    /// Scores the forecast made for a minute against what happened in it.
    pub fn record(&mut self, forecast: f64, actual: f64) {
        self.samples += 1;
        let error = (forecast - actual).abs();
        self.abs_error += error;
        if actual == 0.0 {
            self.zero_actuals += 1;
        } else {
            self.abs_pct += error / actual.abs();
        }
        let denom = forecast.abs() + actual.abs();
        if denom > 0.0 {
            self.smape += 2.0 * error / denom;
        }
        if let Some(prev) = self.previous_actual {
            self.naive_abs += (actual - prev).abs();
        }
        self.previous_actual = Some(actual);
    }

    /// The measures so far.
    pub fn accuracy(&self) -> ForecastAccuracy {
        let n = self.samples as f64;
        let defined = self.samples > 0;
        ForecastAccuracy {
            mape: (defined && self.zero_actuals == 0).then(|| 100.0 * self.abs_pct / n),
            smape: defined.then(|| 100.0 * self.smape / n),
            mase: (self.samples > 1 && self.naive_abs > 0.0)
                .then(|| (self.abs_error / n) / (self.naive_abs / (n - 1.0))),
            samples: self.samples,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    function: String,
    forecaster: String,
    measure: String,
}

/// The `synapse_forecast_error` gauge family: one series per function, forecaster and measure.
#[derive(Clone, Default)]
pub struct ForecastErrorMetric {
    family: Family<ErrorLabels, Gauge<f64, AtomicU64>>,
}

impl ForecastErrorMetric {
    /// Registers the family in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metric = Self::default();
        registry.register(
            "synapse_forecast_error",
            "One-step forecast error per function: mape and smape in %, mase as a ratio",
            metric.family.clone(),
        );
        metric
    }

    /// Sets the function's series from its accuracy; undefined measures are not exported.
    pub fn set(&self, function: &str, forecaster: &str, accuracy: &ForecastAccuracy) {
        for (measure, value) in [
            ("mape", accuracy.mape),
            ("smape", accuracy.smape),
            ("mase", accuracy.mase),
        ] {
            if let Some(v) = value {
                self.family
                    .get_or_create(&ErrorLabels {
                        function: function.into(),
                        forecaster: forecaster.into(),
                        measure: measure.into(),
                    })
                    .set(v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mape_is_defined_only_without_zero_actuals() {
        let mut t = ForecastErrorTracker::default();
        t.record(12.0, 10.0);
        t.record(8.0, 10.0);
        let a = t.accuracy();
        assert!((a.mape.expect("defined") - 20.0).abs() < 1e-9);
        t.record(1.0, 0.0);
        let a = t.accuracy();
        assert_eq!(a.mape, None);
        assert_eq!(a.primary().map(|p| p.0), Some("smape"));
        assert!(a.smape.expect("defined") > 0.0);
    }

    #[test]
    fn mase_scales_by_the_naive_forecast() {
        let mut t = ForecastErrorTracker::default();
        for (f, a) in [(0.0, 0.0), (0.0, 4.0), (4.0, 0.0), (0.0, 4.0)] {
            t.record(f, a);
        }
        // Mean error 3, naive error 4 per step: 0.75.
        assert!((t.accuracy().mase.expect("defined") - 0.75).abs() < 1e-9);
    }

    #[test]
    fn exports_a_gauge_per_function_and_measure() {
        let mut registry = Registry::default();
        let metric = ForecastErrorMetric::register(&mut registry);
        let mut t = ForecastErrorTracker::default();
        t.record(5.0, 4.0);
        metric.set("f1", "hybrid", &t.accuracy());
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
        assert!(
            text.contains(
                r#"synapse_forecast_error{function="f1",forecaster="hybrid",measure="mape"} 25"#
            ),
            "{text}"
        );
    }
}
