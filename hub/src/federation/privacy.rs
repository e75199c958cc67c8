//! Per-client L2 norm clipping and the optional Gaussian noise of differential privacy
//! (DP-FedAvg style): each client's gradient is scaled down to at most `clip_norm`, and the
//! aggregate gets noise of standard deviation `sigma * clip_norm / clients`, so that one
//! client's influence on the update is bounded and blurred.

use rand::{Rng, SeedableRng, rngs::StdRng};

/// The L2 norm of a vector.
pub fn l2_norm(values: &[f32]) -> f64 {
    values
        .iter()
        .map(|v| f64::from(*v) * f64::from(*v))
        .sum::<f64>()
        .sqrt()
}

/// Scales `gradient` so that its L2 norm is at most `clip_norm` (0 disables clipping).
/// Returns true when it was scaled.
pub fn clip(gradient: &mut [f32], clip_norm: f64) -> bool {
    if clip_norm <= 0.0 {
        return false;
    }
    let norm = l2_norm(gradient);
    if norm <= clip_norm {
        return false;
    }
    let scale = clip_norm / norm;
    for g in gradient.iter_mut() {
        *g = (f64::from(*g) * scale) as f32;
    }
    true
}

/// Standard deviation of the noise for `clients` contributions (0 when noise is off).
pub fn noise_std(sigma: f64, clip_norm: f64, clients: usize) -> f64 {
    if sigma <= 0.0 || clip_norm <= 0.0 || clients == 0 {
        0.0
    } else {
        sigma * clip_norm / clients as f64
    }
}

/// Adds Gaussian noise of standard deviation `std` to every coordinate, from `seed`.
pub fn add_noise(aggregate: &mut [f64], std: f64, seed: u64) {
    if std <= 0.0 {
        return;
    }
    let mut rng = StdRng::seed_from_u64(seed);
    for a in aggregate.iter_mut() {
        *a += std * standard_normal(&mut rng);
    }
}

/// One standard normal draw (Box–Muller).
fn standard_normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_small_gradient_is_left_alone() {
        let mut g = vec![0.3, 0.4];
        assert!(!clip(&mut g, 1.0));
        assert_eq!(g, vec![0.3, 0.4]);
    }

    #[test]
    fn noise_has_the_stated_spread() {
        let mut a = vec![0.0; 20_000];
        add_noise(&mut a, 2.0, 7);
        let var = a.iter().map(|x| x * x).sum::<f64>() / a.len() as f64;
        assert!((var.sqrt() - 2.0).abs() < 0.05, "std {}", var.sqrt());
        assert_eq!(noise_std(1.0, 5.0, 10), 0.5);
        assert_eq!(noise_std(0.0, 5.0, 10), 0.0);
    }

    proptest! {
        #[test]
        fn clipping_bounds_the_norm_and_keeps_the_direction(
            g in prop::collection::vec(-1e6f32..1e6, 1..50),
            c in 0.01f64..100.0,
        ) {
            let mut clipped = g.clone();
            clip(&mut clipped, c);
            prop_assert!(l2_norm(&clipped) <= c * (1.0 + 1e-5));
            for (a, b) in clipped.iter().zip(&g) {
                prop_assert!(a.signum() == b.signum() || *a == 0.0 || *b == 0.0);
            }
        }
    }
}
