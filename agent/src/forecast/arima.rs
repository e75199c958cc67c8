//! An ARIMA-family forecaster: ARIMA(p, d, 0) — an autoregression of order `p` on the series
//! differenced `d` times (0 or 1), with an intercept — fitted online by recursive least squares
//! with exponential forgetting, so each minute costs O(p²) and old behaviour fades.

use serde::{Deserialize, Serialize};

use super::{Forecaster, MinuteCount};

/// Settings of the ARIMA forecaster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ArimaConfig {
    /// Autoregressive order. Default 4.
    pub p: usize,
    /// Differencing order, 0 or 1. Default 0.
    pub d: usize,
    /// Forgetting factor of the least-squares fit, 0..=1 (1 remembers everything). Default 0.995.
    pub forgetting: f64,
}

impl Default for ArimaConfig {
    fn default() -> Self {
        Self {
            p: 4,
            d: 0,
            forgetting: 0.995,
        }
    }
}

/// ARIMA state of one function.
#[derive(Debug, Clone)]
pub struct Arima {
    config: ArimaConfig,
    /// Coefficients: intercept, then lags 1..=p.
    theta: Vec<f64>,
    /// Inverse information matrix of the fit, row-major (p+1)².
    cov: Vec<f64>,
    /// Recent differenced values, newest first (p of them).
    lags: Vec<f64>,
    last: Option<f64>,
    seen: usize,
}

impl Arima {
    /// A model that has seen nothing yet.
    pub fn new(config: ArimaConfig) -> Self {
        let n = config.p + 1;
        let mut cov = vec![0.0; n * n];
        for i in 0..n {
            cov[i * n + i] = 100.0;
        }
        Self {
            lags: vec![0.0; config.p],
            theta: vec![0.0; n],
            cov,
            config,
            last: None,
            seen: 0,
        }
    }

    fn regressors(lags: &[f64]) -> Vec<f64> {
        std::iter::once(1.0).chain(lags.iter().copied()).collect()
    }

    fn predict(&self, lags: &[f64]) -> f64 {
        Self::regressors(lags)
            .iter()
            .zip(&self.theta)
            .map(|(x, t)| x * t)
            .sum()
    }

    fn update(&mut self, z: f64) {
        let n = self.theta.len();
        let x = Self::regressors(&self.lags);
        let px: Vec<f64> = (0..n)
            .map(|i| (0..n).map(|j| self.cov[i * n + j] * x[j]).sum())
            .collect();
        let lambda = self.config.forgetting.clamp(0.5, 1.0);
        let denom = lambda + x.iter().zip(&px).map(|(a, b)| a * b).sum::<f64>();
        let error = z - self.predict(&self.lags);
        for (t, p) in self.theta.iter_mut().zip(&px) {
            *t += p / denom * error;
        }
        for i in 0..n {
            for j in 0..n {
                self.cov[i * n + j] = (self.cov[i * n + j] - px[i] * px[j] / denom) / lambda;
            }
        }
        if !self.theta.iter().all(|t| t.is_finite()) {
            *self = Self::new(self.config.clone());
        }
    }
}

impl Forecaster for Arima {
    fn name(&self) -> &'static str {
        "arima"
    }

    fn observe(&mut self, minute: MinuteCount) {
        let y = minute.invocations;
        let z = match (self.config.d, self.last) {
            (0, _) => Some(y),
            (_, Some(prev)) => Some(y - prev),
            (_, None) => None,
        };
        self.last = Some(y);
        if let Some(z) = z {
            if self.seen >= self.config.p {
                self.update(z);
            }
            self.seen += 1;
            if !self.lags.is_empty() {
                self.lags.rotate_right(1);
                self.lags[0] = z;
            }
        }
    }

    fn forecast_next(&self) -> f64 {
        self.forecast(1)[0]
    }

    fn forecast(&self, horizon: usize) -> Vec<f64> {
        let Some(last) = self.last else {
            return vec![0.0; horizon];
        };
        let mut lags = self.lags.clone();
        let mut level = last;
        (0..horizon)
            .map(|_| {
                let z = if self.seen > self.config.p {
                    self.predict(&lags)
                } else if self.config.d == 0 {
                    last
                } else {
                    0.0
                };
                if !lags.is_empty() {
                    lags.rotate_right(1);
                    lags[0] = z;
                }
                level = if self.config.d == 0 { z } else { level + z };
                level.max(0.0)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(f: &mut Arima, counts: impl IntoIterator<Item = f64>) {
        for c in counts {
            f.observe(MinuteCount {
                minute_of_day: 0,
                invocations: c,
            });
        }
    }

    #[test]
    fn learns_an_alternating_series() {
        let mut f = Arima::new(ArimaConfig::default());
        feed(
            &mut f,
            (0..400).map(|i| if i % 2 == 0 { 10.0 } else { 2.0 }),
        );
        let next = f.forecast(2);
        assert!((next[0] - 10.0).abs() < 0.5, "{next:?}");
        assert!((next[1] - 2.0).abs() < 0.5, "{next:?}");
    }

    #[test]
    fn differenced_model_follows_a_ramp() {
        let mut f = Arima::new(ArimaConfig {
            p: 2,
            d: 1,
            forgetting: 1.0,
        });
        feed(&mut f, (0..200).map(f64::from));
        assert!(
            (f.forecast_next() - 200.0).abs() < 1.0,
            "{}",
            f.forecast_next()
        );
    }

    #[test]
    fn never_forecasts_negative_demand() {
        let mut f = Arima::new(ArimaConfig::default());
        feed(&mut f, (0..100).map(|i| 100.0 - f64::from(i)));
        assert!(f.forecast(50).iter().all(|&v| v >= 0.0));
    }
}
