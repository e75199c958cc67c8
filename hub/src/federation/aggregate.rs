//! Aggregators of the clients' gradients of one round: sample-weighted mean (FedAvg),
//! coordinate-wise trimmed mean and coordinate-wise median. Pure functions over gradients that
//! intake already checked (same length, finite values), so they cannot fail on their input.

use serde::{Deserialize, Serialize};

/// How the round's gradients become one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Aggregator {
    /// Mean weighted by each client's sample count (FedAvg), a count weighing at most
    /// [`MAX_WEIGHT_OVER_MEDIAN`] times the median client's. Not robust to a bad gradient:
    /// one client can move it anywhere (unless clipping bounds it).
    Mean,
    /// Per coordinate: drop the `trim_fraction` smallest and largest values, average the rest.
    TrimmedMean,
    /// Per coordinate: the median.
    Median,
}

impl Aggregator {
    pub fn name(self) -> &'static str {
        match self {
            Aggregator::Mean => "mean",
            Aggregator::TrimmedMean => "trimmed-mean",
            Aggregator::Median => "median",
        }
    }
}

/// One client's accepted gradient.
#[derive(Debug, Clone, PartialEq)]
pub struct Contribution {
    pub gradient: Vec<f32>,
    /// Training pairs behind it; the weight in the mean.
    pub samples: u64,
}

/// The aggregate of `contributions` (all of length `parameters`); `None` when there is none.
pub fn aggregate(
    aggregator: Aggregator,
    trim_fraction: f64,
    contributions: &[Contribution],
    parameters: usize,
) -> Option<Vec<f64>> {
    if contributions.is_empty() {
        return None;
    }
    Some(match aggregator {
        Aggregator::Mean => weighted_mean(contributions, parameters),
        Aggregator::TrimmedMean => per_coordinate(contributions, parameters, |column| {
            trimmed_mean(column, trim_fraction)
        }),
        Aggregator::Median => per_coordinate(contributions, parameters, median),
    })
}

/// The most one client's claimed sample count weighs in the mean, as a multiple of the
/// median client's. Sample counts are what each agent says of itself: without a bound, one
/// agent claiming 10^18 samples would set the update's direction alone; with it, its share is
/// at most about 2/(n+1) of n clients, and an honest client with more than twice the median's
/// samples is counted as twice the median.
pub const MAX_WEIGHT_OVER_MEDIAN: u64 = 2;

/// Each contribution's weight: its sample count (at least 1), capped as above.
fn weights(contributions: &[Contribution]) -> Vec<f64> {
    let mut claimed: Vec<u64> = contributions.iter().map(|c| c.samples.max(1)).collect();
    claimed.sort_unstable();
    let cap = claimed[(claimed.len() - 1) / 2].saturating_mul(MAX_WEIGHT_OVER_MEDIAN);
    contributions
        .iter()
        .map(|c| c.samples.clamp(1, cap) as f64)
        .collect()
}

fn weighted_mean(contributions: &[Contribution], parameters: usize) -> Vec<f64> {
    let weights = weights(contributions);
    let total: f64 = weights.iter().sum();
    let mut sum = vec![0.0f64; parameters];
    for (c, weight) in contributions.iter().zip(&weights) {
        let w = weight / total;
        for (s, g) in sum.iter_mut().zip(&c.gradient) {
            *s += w * f64::from(*g);
        }
    }
    sum
}

/// Applies `reduce` to each coordinate's values across clients (sorted ascending).
fn per_coordinate(
    contributions: &[Contribution],
    parameters: usize,
    reduce: impl Fn(&[f64]) -> f64,
) -> Vec<f64> {
    let mut column = Vec::with_capacity(contributions.len());
    (0..parameters)
        .map(|k| {
            column.clear();
            column.extend(contributions.iter().map(|c| f64::from(c.gradient[k])));
            column.sort_unstable_by(f64::total_cmp);
            reduce(&column)
        })
        .collect()
}

/// Mean of `sorted` without its `fraction` lowest and highest values (at least one value
/// stays).
pub fn trimmed_mean(sorted: &[f64], fraction: f64) -> f64 {
    let n = sorted.len();
    let mut cut = (fraction.clamp(0.0, 0.5) * n as f64).floor() as usize;
    if 2 * cut >= n {
        cut = (n - 1) / 2;
    }
    let kept = &sorted[cut..n - cut];
    kept.iter().sum::<f64>() / kept.len() as f64
}

/// Median of `sorted` (mean of the two middle values for an even count).
pub fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        0.5 * (sorted[n / 2 - 1] + sorted[n / 2])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn contribution(values: &[f32], samples: u64) -> Contribution {
        Contribution {
            gradient: values.to_vec(),
            samples,
        }
    }

    #[test]
    fn the_mean_weighs_clients_by_their_samples() {
        // Within twice the median, the weights are the sample counts: 3 and 2.
        let all = [contribution(&[1.0, 0.0], 3), contribution(&[6.0, 5.0], 2)];
        let mean = aggregate(Aggregator::Mean, 0.0, &all, 2).unwrap();
        assert!(
            (mean[0] - 3.0).abs() < 1e-12 && (mean[1] - 2.0).abs() < 1e-12,
            "{mean:?}"
        );
    }

    #[test]
    fn a_client_claiming_huge_sample_counts_weighs_at_most_twice_the_median() {
        let mut all: Vec<Contribution> = (0..3).map(|_| contribution(&[1.0], 100)).collect();
        all.push(contribution(&[-1.0], 1_000_000_000_000_000_000));
        let mean = aggregate(Aggregator::Mean, 0.0, &all, 1).unwrap();
        // Weights 100, 100, 100 and 200 (the cap): (300 - 200) / 500.
        assert!((mean[0] - 0.2).abs() < 1e-12, "{mean:?}");
        // Uncapped, the claim would have set the direction: the mean would be about -1.
        assert!(mean[0] > 0.0);
    }

    #[test]
    fn trimmed_mean_and_median_ignore_one_outlier_of_five() {
        let mut all: Vec<Contribution> = (1..=4).map(|i| contribution(&[i as f32], 1)).collect();
        all.push(contribution(&[1e30], 1));
        let trimmed = aggregate(Aggregator::TrimmedMean, 0.2, &all, 1).unwrap();
        assert_eq!(trimmed, vec![3.0]);
        let median = aggregate(Aggregator::Median, 0.0, &all, 1).unwrap();
        assert_eq!(median, vec![3.0]);
        let mean = aggregate(Aggregator::Mean, 0.0, &all, 1).unwrap();
        assert!(mean[0] > 1e29, "the mean follows the outlier");
    }

    #[test]
    fn nothing_to_aggregate_gives_nothing() {
        assert_eq!(aggregate(Aggregator::Median, 0.1, &[], 3), None);
    }

    fn clients() -> impl Strategy<Value = Vec<Contribution>> {
        (1usize..6).prop_flat_map(|dim| {
            prop::collection::vec(
                (prop::collection::vec(-1e6f32..1e6, dim), 1u64..1000)
                    .prop_map(|(gradient, samples)| Contribution { gradient, samples }),
                1..12,
            )
        })
    }

    fn bounds(all: &[Contribution], k: usize) -> (f64, f64) {
        let values = all.iter().map(|c| f64::from(c.gradient[k]));
        let lo = values.clone().fold(f64::INFINITY, f64::min);
        let hi = values.fold(f64::NEG_INFINITY, f64::max);
        (lo, hi)
    }

    proptest! {
        #[test]
        fn every_aggregate_lies_within_the_clients_range(
            all in clients(),
            fraction in 0.0f64..0.5,
        ) {
            let dim = all[0].gradient.len();
            for aggregator in [Aggregator::Mean, Aggregator::TrimmedMean, Aggregator::Median] {
                let out = aggregate(aggregator, fraction, &all, dim).unwrap();
                prop_assert_eq!(out.len(), dim);
                for (k, v) in out.iter().enumerate() {
                    let (lo, hi) = bounds(&all, k);
                    let slack = 1e-9 * (lo.abs() + hi.abs() + 1.0);
                    prop_assert!(*v >= lo - slack && *v <= hi + slack, "{aggregator:?} {v} not in [{lo}, {hi}]");
                }
            }
        }

        #[test]
        fn identical_clients_aggregate_to_their_gradient(
            gradient in prop::collection::vec(-1e3f32..1e3, 1..8),
            n in 1usize..9,
            fraction in 0.0f64..0.5,
        ) {
            let all: Vec<Contribution> = (0..n).map(|i| contribution(&gradient, i as u64 + 1)).collect();
            for aggregator in [Aggregator::Mean, Aggregator::TrimmedMean, Aggregator::Median] {
                let out = aggregate(aggregator, fraction, &all, gradient.len()).unwrap();
                for (o, g) in out.iter().zip(&gradient) {
                    prop_assert!((o - f64::from(*g)).abs() <= 1e-9 * (1.0 + f64::from(*g).abs()));
                }
            }
        }

        #[test]
        fn order_of_clients_does_not_matter(all in clients(), fraction in 0.0f64..0.5) {
            let dim = all[0].gradient.len();
            let mut reversed = all.clone();
            reversed.reverse();
            for aggregator in [Aggregator::TrimmedMean, Aggregator::Median] {
                prop_assert_eq!(
                    aggregate(aggregator, fraction, &all, dim),
                    aggregate(aggregator, fraction, &reversed, dim)
                );
            }
        }

        #[test]
        fn a_minority_of_outliers_cannot_drag_the_median_outside_the_honest_range(
            honest in prop::collection::vec(-10f32..10.0, 3..9),
            outlier in prop::num::f32::NORMAL,
        ) {
            // Fewer outliers than half the clients: the median stays among honest values.
            let byzantine = (honest.len() - 1) / 2;
            let mut all: Vec<Contribution> = honest.iter().map(|&v| contribution(&[v], 1)).collect();
            all.extend((0..byzantine).map(|_| contribution(&[outlier], 1)));
            let m = aggregate(Aggregator::Median, 0.0, &all, 1).unwrap()[0];
            let lo = honest.iter().copied().fold(f32::INFINITY, f32::min) as f64;
            let hi = honest.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            prop_assert!(m >= lo && m <= hi, "{m} outside [{lo}, {hi}]");
        }
    }
}
