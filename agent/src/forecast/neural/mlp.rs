//! The neural forecaster's fixed architecture, with a Rust forward and backward pass.
//!
//! ```text
//! features[19] ─ MatMul W1[19×16] ─ Add b1[16] ─ Tanh ─ MatMul W2[16×1] ─ Add b2[1] ─▶ log_rate
//! ```
//!
//! Features of a function at the end of minute `t` (see [`features`]):
//! `ln(1 + count)` of minutes `t-15 ..= t` (oldest first, 16 values), the time of day of minute
//! `t + 1` as `sin` and `cos` of its angle on the 24-hour circle (2 values), and
//! `ln(1 + mean count of the last 60 minutes)` (1 value). The output is the forecast of
//! `ln(1 + count)` of minute `t + 1`; the forecast count is `exp(max(output, 0)) - 1`.
//!
//! The ONNX file ([`super::onnx`]) is the single source of the weights; tract runs it
//! ([`super::runner`]) and the passes here compute the same function and its gradient, which
//! federated training needs on the agents.

/// Recent minutes the model reads.
pub const LAGS: usize = 16;
/// Input width: lags, time of day (sin, cos), hourly mean.
pub const INPUTS: usize = LAGS + 3;
/// Hidden units.
pub const HIDDEN: usize = 16;
/// Number of parameters: W1, b1, W2, b2 in that order.
pub const PARAMETERS: usize = INPUTS * HIDDEN + HIDDEN + HIDDEN + 1;

const W1: usize = 0;
const B1: usize = W1 + INPUTS * HIDDEN;
const W2: usize = B1 + HIDDEN;
const B2: usize = W2 + HIDDEN;

/// The weights of the MLP, flat: `W1` row-major (`[input][hidden]`), `b1`, `W2`, `b2`.
#[derive(Debug, Clone, PartialEq)]
pub struct MlpModel {
    params: Vec<f32>,
}

/// A model could not be built from the given weights.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WeightsError {
    #[error("expected {expected} weights, got {got}")]
    Count { expected: usize, got: usize },
    #[error("weight {index} is not finite")]
    NotFinite { index: usize },
}

impl MlpModel {
    /// A model from flat weights (see the type's doc for the order).
    pub fn from_params(params: Vec<f32>) -> Result<Self, WeightsError> {
        if params.len() != PARAMETERS {
            return Err(WeightsError::Count {
                expected: PARAMETERS,
                got: params.len(),
            });
        }
        if let Some(index) = params.iter().position(|p| !p.is_finite()) {
            return Err(WeightsError::NotFinite { index });
        }
        Ok(Self { params })
    }

    /// A model whose weights are all zero (a starting point for training).
    pub fn zeroed() -> Self {
        Self {
            params: vec![0.0; PARAMETERS],
        }
    }

    /// The flat weights.
    pub fn params(&self) -> &[f32] {
        &self.params
    }

    /// `W1` as `[input][hidden]`, row-major.
    pub fn w1(&self) -> &[f32] {
        &self.params[W1..B1]
    }
    /// `b1`.
    pub fn b1(&self) -> &[f32] {
        &self.params[B1..W2]
    }
    /// `W2` as `[hidden][1]`.
    pub fn w2(&self) -> &[f32] {
        &self.params[W2..B2]
    }
    /// `b2`.
    pub fn b2(&self) -> f32 {
        self.params[B2]
    }

    /// Adds `delta` (same layout as the weights) times `scale`, e.g. an optimizer step.
    pub fn apply(&mut self, delta: &[f64], scale: f64) {
        for (p, d) in self.params.iter_mut().zip(delta) {
            *p += (scale * d) as f32;
        }
    }

    fn hidden(&self, x: &[f32; INPUTS]) -> [f64; HIDDEN] {
        let mut h = [0.0f64; HIDDEN];
        for (j, hj) in h.iter_mut().enumerate() {
            let mut z = f64::from(self.params[B1 + j]);
            for (i, &xi) in x.iter().enumerate() {
                z += f64::from(xi) * f64::from(self.params[W1 + i * HIDDEN + j]);
            }
            *hj = z.tanh();
        }
        h
    }

    fn output(&self, h: &[f64; HIDDEN]) -> f64 {
        let w2 = &self.params[W2..B2];
        f64::from(self.params[B2])
            + h.iter()
                .zip(w2)
                .map(|(hj, w)| hj * f64::from(*w))
                .sum::<f64>()
    }

    /// The model's output (forecast of `ln(1 + next count)`) for one feature vector.
    pub fn forward(&self, x: &[f32; INPUTS]) -> f64 {
        self.output(&self.hidden(x))
    }

    /// Squared-error loss `½ (output − target)²` and its gradient with respect to every
    /// weight (same layout as [`MlpModel::params`]).
    pub fn backward(&self, x: &[f32; INPUTS], target: f64) -> (f64, Vec<f64>) {
        let h = self.hidden(x);
        let y = self.output(&h);
        let dy = y - target;
        let mut grad = vec![0.0; PARAMETERS];
        grad[B2] = dy;
        for j in 0..HIDDEN {
            grad[W2 + j] = dy * h[j];
            let dz = dy * f64::from(self.params[W2 + j]) * (1.0 - h[j] * h[j]);
            grad[B1 + j] = dz;
            for (i, &xi) in x.iter().enumerate() {
                grad[W1 + i * HIDDEN + j] = dz * f64::from(xi);
            }
        }
        (0.5 * dy * dy, grad)
    }
}

/// The feature vector of the architecture, from the last minutes of a function.
///
/// `recent` holds the counts of up to the last 60 minutes, oldest first, ending with minute
/// `t`; missing history counts as zero. `next_minute_of_day` is the minute being forecast.
pub fn features(recent: &[f64], next_minute_of_day: u32) -> [f32; INPUTS] {
    let mut x = [0.0f32; INPUTS];
    let n = recent.len();
    for k in 0..LAGS.min(n) {
        x[LAGS - 1 - k] = (recent[n - 1 - k].max(0.0)).ln_1p() as f32;
    }
    let angle = f64::from(next_minute_of_day % 1440) / 1440.0 * std::f64::consts::TAU;
    x[LAGS] = angle.sin() as f32;
    x[LAGS + 1] = angle.cos() as f32;
    let hour = &recent[n.saturating_sub(60)..];
    let mean = hour.iter().sum::<f64>() / 60.0;
    x[LAGS + 2] = mean.max(0.0).ln_1p() as f32;
    x
}

/// Turns the model's output into a count forecast.
pub fn to_count(output: f64) -> f64 {
    output.max(0.0).exp_m1()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(seed: u32) -> MlpModel {
        // A fixed pseudo-random model: a simple LCG keeps the test self-contained.
        let mut s = seed;
        let params = (0..PARAMETERS)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (f64::from(s >> 8) / f64::from(1u32 << 24) - 0.5) as f32
            })
            .collect();
        MlpModel::from_params(params).expect("right size")
    }

    #[test]
    fn gradients_equal_finite_differences() {
        let m = model(7);
        let recent: Vec<f64> = (0..60).map(|i| f64::from(i % 7) * 3.0).collect();
        let x = features(&recent, 600);
        let target = 1.3;
        let (_, grad) = m.backward(&x, target);
        let h = 1e-3f32;
        let mut worst = 0.0f64;
        for (k, analytic) in grad.iter().enumerate() {
            let mut plus = m.clone();
            plus.params[k] += h;
            let mut minus = m.clone();
            minus.params[k] -= h;
            let step = f64::from(plus.params[k]) - f64::from(minus.params[k]);
            let numeric = (plus.backward(&x, target).0 - minus.backward(&x, target).0) / step;
            worst = worst.max((numeric - analytic).abs() / (1e-3 + analytic.abs()));
        }
        assert!(worst < 1e-4, "largest relative gradient error {worst}");
    }

    #[test]
    fn features_place_the_newest_minute_last() {
        let x = features(&[0.0, 1.0, 3.0], 0);
        assert_eq!(x[LAGS - 1], (3.0f64).ln_1p() as f32);
        assert_eq!(x[LAGS - 3], 0.0);
        assert_eq!(x[0], 0.0, "missing history is zero");
        assert!((x[LAGS + 1] - 1.0).abs() < 1e-6, "midnight: cos = 1");
    }

    #[test]
    fn refuses_weights_of_another_shape() {
        assert_eq!(
            MlpModel::from_params(vec![0.0; 3]),
            Err(WeightsError::Count {
                expected: PARAMETERS,
                got: 3
            })
        );
    }
}
