//! Pretraining of the neural forecaster on synthetic demand, so a fresh agent ships with a
//! useful model before any fleet data exists. The series families are the shapes serverless
//! demand takes (steady Poisson traffic, timers on a beat, on/off bursts, slow waves); no
//! recorded trace is used. Training is Adam on the squared error of `ln(1 + count)`, driven by
//! the Rust backward pass, seeded and deterministic.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::mlp::{INPUTS, MlpModel, PARAMETERS, features};

/// Settings of the synthetic pretraining.
#[derive(Debug, Clone, PartialEq)]
pub struct PretrainConfig {
    /// Optimizer steps. Default 3000.
    pub steps: usize,
    /// Series per step. Default 32.
    pub batch: usize,
    /// Adam learning rate. Default 0.003.
    pub learning_rate: f64,
    /// Seed of the weights and of the series. Default 1.
    pub seed: u64,
}

impl Default for PretrainConfig {
    fn default() -> Self {
        Self {
            steps: 3000,
            batch: 32,
            learning_rate: 0.003,
            seed: 1,
        }
    }
}

/// Trains a model from a seeded random start.
pub fn pretrain(config: &PretrainConfig) -> MlpModel {
    let mut rng = StdRng::seed_from_u64(config.seed);
    let scale = (1.0 / INPUTS as f64).sqrt();
    let start: Vec<f64> = (0..PARAMETERS)
        .map(|_| rng.random_range(-1.0..1.0) * scale)
        .collect();
    let mut model = MlpModel::zeroed();
    model.apply(&start, 1.0);
    let mut adam = Adam::new(config.learning_rate);
    for _ in 0..config.steps {
        let mut grad = vec![0.0; PARAMETERS];
        for _ in 0..config.batch {
            let (x, target) = sample(&mut rng);
            let (_, g) = model.backward(&x, target);
            for (a, b) in grad.iter_mut().zip(&g) {
                *a += b / config.batch as f64;
            }
        }
        let step = adam.step(&grad);
        model.apply(&step, 1.0);
    }
    model
}

/// One training pair: features of 60 synthetic minutes and `ln(1 + count)` of the next.
fn sample(rng: &mut StdRng) -> ([f32; INPUTS], f64) {
    let series = synthetic_series(rng, 61);
    let minute_of_day = rng.random_range(0..1440u32);
    let x = features(&series[..60], minute_of_day);
    (x, series[60].ln_1p())
}

/// A synthetic per-minute series of one of the demand families.
pub fn synthetic_series(rng: &mut StdRng, len: usize) -> Vec<f64> {
    let rate = 10f64.powf(rng.random_range(-2.0..2.7));
    match rng.random_range(0..4) {
        0 => (0..len).map(|_| poisson(rng, rate)).collect(),
        1 => {
            let period = [1usize, 2, 5, 10, 15, 30, 60][rng.random_range(0..7)];
            let phase = rng.random_range(0..period);
            let beat = rate.max(1.0);
            (0..len)
                .map(|m| {
                    if (m + phase) % period == 0 {
                        poisson(rng, beat)
                    } else {
                        0.0
                    }
                })
                .collect()
        }
        2 => {
            let (p_on, p_off) = (rng.random_range(0.01..0.3), rng.random_range(0.05..0.5));
            let mut on = rng.random_bool(0.5);
            (0..len)
                .map(|_| {
                    on = if on {
                        !rng.random_bool(p_off)
                    } else {
                        rng.random_bool(p_on)
                    };
                    if on { poisson(rng, rate) } else { 0.0 }
                })
                .collect()
        }
        _ => {
            let period = rng.random_range(30.0..600.0);
            let phase = rng.random_range(0.0..std::f64::consts::TAU);
            (0..len)
                .map(|m| {
                    let wave =
                        1.0 + 0.8 * (m as f64 / period * std::f64::consts::TAU + phase).sin();
                    poisson(rng, rate * wave)
                })
                .collect()
        }
    }
}

/// A Poisson draw: Knuth's method for small means, a rounded normal for large ones.
fn poisson(rng: &mut StdRng, mean: f64) -> f64 {
    if mean <= 0.0 {
        return 0.0;
    }
    if mean > 30.0 {
        let u1: f64 = rng.random_range(f64::EPSILON..1.0);
        let u2: f64 = rng.random();
        let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        return (mean + z * mean.sqrt()).round().max(0.0);
    }
    let limit = (-mean).exp();
    let mut k = 0.0;
    let mut p: f64 = rng.random();
    while p > limit {
        k += 1.0;
        p *= rng.random::<f64>();
    }
    k
}

/// The Adam optimizer over the flat weight vector.
struct Adam {
    lr: f64,
    m: Vec<f64>,
    v: Vec<f64>,
    t: i32,
}

impl Adam {
    fn new(lr: f64) -> Self {
        Self {
            lr,
            m: vec![0.0; PARAMETERS],
            v: vec![0.0; PARAMETERS],
            t: 0,
        }
    }

    /// The update to add to the weights for gradient `g`.
    fn step(&mut self, g: &[f64]) -> Vec<f64> {
        const B1: f64 = 0.9;
        const B2: f64 = 0.999;
        self.t += 1;
        let c1 = 1.0 - B1.powi(self.t);
        let c2 = 1.0 - B2.powi(self.t);
        g.iter()
            .enumerate()
            .map(|(i, &gi)| {
                self.m[i] = B1 * self.m[i] + (1.0 - B1) * gi;
                self.v[i] = B2 * self.v[i] + (1.0 - B2) * gi * gi;
                -self.lr * (self.m[i] / c1) / ((self.v[i] / c2).sqrt() + 1e-8)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mean_loss(model: &MlpModel, seed: u64) -> f64 {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..500)
            .map(|_| {
                let (x, t) = sample(&mut rng);
                model.backward(&x, t).0
            })
            .sum::<f64>()
            / 500.0
    }

    #[test]
    fn pretraining_lowers_the_loss_on_unseen_series() {
        let short = pretrain(&PretrainConfig {
            steps: 1,
            ..PretrainConfig::default()
        });
        let trained = pretrain(&PretrainConfig {
            steps: 800,
            ..PretrainConfig::default()
        });
        let (before, after) = (mean_loss(&short, 99), mean_loss(&trained, 99));
        assert!(after < before * 0.5, "loss {before} → {after}");
    }

    #[test]
    fn pretraining_is_deterministic_per_seed() {
        let config = PretrainConfig {
            steps: 20,
            ..PretrainConfig::default()
        };
        assert_eq!(pretrain(&config), pretrain(&config));
    }
}
