//! The hub's optimizer step on the model's flat weights: SGD with momentum, or Adam. Its state
//! (velocity, moments, step count) is serialisable so that it survives a hub restart.

use serde::{Deserialize, Serialize};

/// Which optimizer the hub runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OptimizerKind {
    SgdMomentum,
    Adam,
}

/// Optimizer state over `parameters` weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Optimizer {
    pub kind: OptimizerKind,
    pub learning_rate: f64,
    pub momentum: f64,
    /// Steps taken.
    pub t: u64,
    /// Velocity (SGD) or first moment (Adam).
    pub m: Vec<f64>,
    /// Second moment (Adam only).
    pub v: Vec<f64>,
}

const BETA2: f64 = 0.999;
const EPSILON: f64 = 1e-8;

impl Optimizer {
    pub fn new(kind: OptimizerKind, learning_rate: f64, momentum: f64, parameters: usize) -> Self {
        Self {
            kind,
            learning_rate,
            momentum,
            t: 0,
            m: vec![0.0; parameters],
            v: vec![0.0; parameters],
        }
    }

    /// Keeps the moments but takes the configured settings (the operator may change the
    /// learning rate between runs); a change of kind or size starts afresh.
    pub fn reconfigured(
        self,
        kind: OptimizerKind,
        learning_rate: f64,
        momentum: f64,
        parameters: usize,
    ) -> Self {
        if self.kind != kind || self.m.len() != parameters {
            return Self::new(kind, learning_rate, momentum, parameters);
        }
        Self {
            learning_rate,
            momentum,
            ..self
        }
    }

    /// The change to add to the weights for the aggregated gradient `g`.
    pub fn step(&mut self, g: &[f64]) -> Vec<f64> {
        self.t += 1;
        match self.kind {
            OptimizerKind::SgdMomentum => g
                .iter()
                .zip(self.m.iter_mut())
                .map(|(gi, vi)| {
                    *vi = self.momentum * *vi + gi;
                    -self.learning_rate * *vi
                })
                .collect(),
            OptimizerKind::Adam => {
                let beta1 = self.momentum;
                let c1 = 1.0 - beta1.powi(self.t.min(i32::MAX as u64) as i32);
                let c2 = 1.0 - BETA2.powi(self.t.min(i32::MAX as u64) as i32);
                g.iter()
                    .zip(self.m.iter_mut().zip(self.v.iter_mut()))
                    .map(|(gi, (mi, vi))| {
                        *mi = beta1 * *mi + (1.0 - beta1) * gi;
                        *vi = BETA2 * *vi + (1.0 - BETA2) * gi * gi;
                        -self.learning_rate * (*mi / c1) / ((*vi / c2).sqrt() + EPSILON)
                    })
                    .collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Minimises (x - 3)² from 0.
    fn minimise(kind: OptimizerKind, lr: f64) -> f64 {
        let mut opt = Optimizer::new(kind, lr, 0.9, 1);
        let mut x = 0.0;
        for _ in 0..2000 {
            let g = 2.0 * (x - 3.0);
            x += opt.step(&[g])[0];
        }
        x
    }

    #[test]
    fn both_optimizers_descend_to_the_minimum() {
        assert!((minimise(OptimizerKind::SgdMomentum, 0.01) - 3.0).abs() < 1e-3);
        assert!((minimise(OptimizerKind::Adam, 0.05) - 3.0).abs() < 1e-2);
    }

    #[test]
    fn adams_first_step_has_the_learning_rates_size() {
        let mut opt = Optimizer::new(OptimizerKind::Adam, 0.001, 0.9, 2);
        let step = opt.step(&[1e6, -1e-3]);
        assert!(
            (step[0] + 0.001).abs() < 1e-6 && (step[1] - 0.001).abs() < 1e-5,
            "{step:?}"
        );
    }
}
