//! Training pairs from per-minute counts, and the mean loss and gradient of the neural
//! forecaster over them (pure). A pair is the model's features at the end of minute `t - 1`
//! (the hour before, and the time of day of `t`) and the target `ln(1 + count of t)`, exactly
//! as the forecaster sees a function live.

use crate::forecast::neural::mlp::{self, INPUTS, MlpModel, PARAMETERS};

/// One training pair.
pub type Pair = ([f32; INPUTS], f64);

/// Minutes of history a pair's features read.
pub const HISTORY: usize = 60;

/// Pairs of one function's `counts`, whose minute 0 is `first_minute_of_day`, for the target
/// minutes `targets` (a range of indices into `counts`; minutes before index 0 count as none).
pub fn pairs_of(
    counts: &[f64],
    first_minute_of_day: u32,
    targets: std::ops::Range<usize>,
) -> Vec<Pair> {
    let end = targets.end.min(counts.len());
    (targets.start..end)
        .map(|t| {
            let recent = &counts[t.saturating_sub(HISTORY)..t];
            let minute = (first_minute_of_day + t as u32) % 1440;
            (mlp::features(recent, minute), counts[t].max(0.0).ln_1p())
        })
        .collect()
}

/// Keeps at most `max` pairs, evenly spaced, so a large fleet's round stays cheap.
pub fn thin(pairs: Vec<Pair>, max: usize) -> Vec<Pair> {
    if pairs.len() <= max || max == 0 {
        return pairs;
    }
    let stride = pairs.len() as f64 / max as f64;
    (0..max)
        .map(|i| pairs[(i as f64 * stride) as usize])
        .collect()
}

/// Mean loss and mean gradient of `model` over `pairs`; `None` for no pairs.
pub fn mean_gradient(model: &MlpModel, pairs: &[Pair]) -> Option<(f64, Vec<f64>)> {
    if pairs.is_empty() {
        return None;
    }
    let mut loss = 0.0;
    let mut gradient = vec![0.0; PARAMETERS];
    for (x, target) in pairs {
        let (l, g) = model.backward(x, *target);
        loss += l;
        for (a, b) in gradient.iter_mut().zip(&g) {
            *a += b;
        }
    }
    let n = pairs.len() as f64;
    gradient.iter_mut().for_each(|g| *g /= n);
    Some((loss / n, gradient))
}

/// Mean loss of `model` over `pairs` (the forecast error in log space); NaN for no pairs.
pub fn mean_loss(model: &MlpModel, pairs: &[Pair]) -> f64 {
    pairs
        .iter()
        .map(|(x, t)| {
            let d = model.forward(x) - t;
            0.5 * d * d
        })
        .sum::<f64>()
        / pairs.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pair_sees_only_the_minutes_before_its_target() {
        let counts = [1.0, 2.0, 3.0, 100.0];
        let pairs = pairs_of(&counts, 0, 3..4);
        let (x, target) = pairs[0];
        assert_eq!(target, 100f64.ln_1p());
        assert_eq!(
            x[mlp::LAGS - 1],
            3f64.ln_1p() as f32,
            "newest lag is minute 2"
        );
        assert!(
            (x[mlp::LAGS + 1] - (3.0f64 / 1440.0 * std::f64::consts::TAU).cos() as f32).abs()
                < 1e-6
        );
    }

    #[test]
    fn the_mean_gradient_is_the_gradient_of_the_mean_loss() {
        let model = crate::forecast::neural::train::pretrain(
            &crate::forecast::neural::train::PretrainConfig {
                steps: 10,
                ..Default::default()
            },
        );
        let counts: Vec<f64> = (0..200).map(|m| f64::from(m % 13)).collect();
        let pairs = pairs_of(&counts, 100, 60..200);
        let (loss, gradient) = mean_gradient(&model, &pairs).unwrap();
        assert!((loss - mean_loss(&model, &pairs)).abs() < 1e-12);
        // A small step against the gradient lowers the mean loss.
        let mut stepped = model.clone();
        stepped.apply(&gradient, -1e-3);
        assert!(mean_loss(&stepped, &pairs) < loss);
    }

    #[test]
    fn thinning_keeps_the_count_and_spreads_the_pairs() {
        let counts: Vec<f64> = (0..1000).map(f64::from).collect();
        let pairs = pairs_of(&counts, 0, 0..1000);
        let thinned = thin(pairs, 10);
        assert_eq!(thinned.len(), 10);
        assert_eq!(thinned[9].1, 900f64.ln_1p());
    }
}
