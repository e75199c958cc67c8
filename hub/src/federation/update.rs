//! One round's model update, pure: clip each client's gradient, aggregate, add the privacy
//! noise, take the optimizer step. The coordinator feeds it the stored gradients; the Byzantine
//! tests and the aggregation bench call it directly.

use std::collections::BTreeMap;

use super::{
    aggregate::{Contribution, aggregate},
    config::FederationConfig,
    optimizer::Optimizer,
    privacy,
};

/// A round's update and the figures recorded with the version it produces.
#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    /// The new weights.
    pub weights: Vec<f32>,
    /// Evaluation metrics of the new version (see docs/learning.md).
    pub metrics: BTreeMap<String, f64>,
}

/// Applies the round's `contributions` to `weights`. `noise_seed` makes the privacy noise
/// reproducible per round. `None` when there is nothing to aggregate.
pub fn apply_round(
    config: &FederationConfig,
    optimizer: &mut Optimizer,
    weights: &[f32],
    mut contributions: Vec<Contribution>,
    noise_seed: u64,
) -> Option<Update> {
    let clients = contributions.len();
    let samples: u64 = contributions.iter().map(|c| c.samples).sum();
    let mut clipped = 0;
    for c in contributions.iter_mut() {
        clipped += usize::from(privacy::clip(&mut c.gradient, config.clip_norm));
    }
    let mut aggregated = aggregate(
        config.aggregator,
        config.trim_fraction,
        &contributions,
        weights.len(),
    )?;
    let noise_std = privacy::noise_std(config.dp_noise_sigma, config.clip_norm, clients);
    privacy::add_noise(&mut aggregated, noise_std, noise_seed);
    let gradient_norm = aggregated.iter().map(|g| g * g).sum::<f64>().sqrt();
    let step = optimizer.step(&aggregated);
    let update_norm = step.iter().map(|s| s * s).sum::<f64>().sqrt();
    let new: Vec<f32> = weights
        .iter()
        .zip(&step)
        .map(|(w, s)| (f64::from(*w) + s) as f32)
        .collect();
    let metrics = BTreeMap::from([
        ("clients".to_owned(), clients as f64),
        ("samples".to_owned(), samples as f64),
        ("clipped".to_owned(), clipped as f64),
        ("clip_norm".to_owned(), config.clip_norm),
        ("dp_noise_sigma".to_owned(), config.dp_noise_sigma),
        ("dp_noise_std".to_owned(), noise_std),
        ("gradient_norm".to_owned(), gradient_norm),
        ("update_norm".to_owned(), update_norm),
        ("learning_rate".to_owned(), config.learning_rate),
    ]);
    Some(Update {
        weights: new,
        metrics,
    })
}

#[cfg(test)]
mod tests {
    //! Byzantine clients: one of five sends a huge, a sign-flipped or a NaN gradient.
    use super::super::{aggregate::Aggregator, intake, optimizer::OptimizerKind};
    use super::*;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    const PARAMETERS: usize = 337;

    /// Four honest clients: a common descent direction plus noise of a fifth of its size.
    fn honest(rng: &mut StdRng, direction: &[f32]) -> Vec<Contribution> {
        (0..4)
            .map(|_| Contribution {
                gradient: direction
                    .iter()
                    .map(|d| d + rng.random_range(-0.2..0.2))
                    .collect(),
                samples: 500,
            })
            .collect()
    }

    fn config(aggregator: Aggregator, clip_norm: f64) -> FederationConfig {
        FederationConfig {
            aggregator,
            trim_fraction: 0.2,
            clip_norm,
            optimizer: OptimizerKind::SgdMomentum,
            momentum: 0.0,
            learning_rate: 0.01,
            ..FederationConfig::default()
        }
    }

    /// Distance between the weights after a round with the Byzantine client and after a
    /// round of the honest clients alone under plain mean.
    fn damage(aggregator: Aggregator, clip_norm: f64, attack: &dyn Fn(&[f32]) -> Vec<f32>) -> f64 {
        let mut rng = StdRng::seed_from_u64(3);
        let direction: Vec<f32> = (0..PARAMETERS)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let weights = vec![0.0f32; PARAMETERS];
        let clients = honest(&mut rng, &direction);
        let reference = apply_round(
            &config(Aggregator::Mean, clip_norm),
            &mut Optimizer::new(OptimizerKind::SgdMomentum, 0.01, 0.0, PARAMETERS),
            &weights,
            clients.clone(),
            0,
        )
        .unwrap()
        .weights;
        let mut all = clients;
        all.push(Contribution {
            gradient: attack(&direction),
            samples: 500,
        });
        let cfg = config(aggregator, clip_norm);
        let mut optimizer = Optimizer::new(OptimizerKind::SgdMomentum, 0.01, 0.0, PARAMETERS);
        let attacked = apply_round(&cfg, &mut optimizer, &weights, all, 0)
            .unwrap()
            .weights;
        attacked
            .iter()
            .zip(&reference)
            .map(|(a, b)| f64::from(a - b).powi(2))
            .sum::<f64>()
            .sqrt()
    }

    /// The size of one honest step: learning rate times the honest gradient's norm.
    fn honest_step() -> f64 {
        0.01 * (PARAMETERS as f64 / 3.0).sqrt()
    }

    #[test]
    fn a_huge_gradient_moves_robust_aggregates_less_than_half_an_honest_step() {
        let huge = |d: &[f32]| d.iter().map(|x| x * 1e6).collect::<Vec<f32>>();
        let bound = 0.5 * honest_step();
        for aggregator in [Aggregator::TrimmedMean, Aggregator::Median] {
            let moved = damage(aggregator, 0.0, &huge);
            assert!(moved < bound, "{aggregator:?} moved {moved} ≥ {bound}");
        }
        let moved = damage(Aggregator::Mean, 0.0, &huge);
        assert!(
            moved > 1000.0 * honest_step(),
            "plain mean moved only {moved}"
        );
    }

    #[test]
    fn a_sign_flipped_gradient_moves_robust_aggregates_less_than_half_an_honest_step() {
        let flipped = |d: &[f32]| d.iter().map(|x| -50.0 * x).collect::<Vec<f32>>();
        let bound = 0.5 * honest_step();
        for aggregator in [Aggregator::TrimmedMean, Aggregator::Median] {
            let moved = damage(aggregator, 0.0, &flipped);
            assert!(moved < bound, "{aggregator:?} moved {moved} ≥ {bound}");
        }
        let moved = damage(Aggregator::Mean, 0.0, &flipped);
        assert!(moved > 5.0 * honest_step(), "plain mean moved only {moved}");
    }

    #[test]
    fn clipping_bounds_what_one_client_can_do_to_the_mean() {
        let huge = |d: &[f32]| d.iter().map(|x| x * 1e6).collect::<Vec<f32>>();
        // Clipped at 20 (above the honest norm ≈ 10.6), one of five moves the mean by at most
        // lr × (20 + 10.6) / 5.
        let moved = damage(Aggregator::Mean, 20.0, &huge);
        assert!(moved <= 0.01 * (20.0 + 10.7) / 5.0, "moved {moved}");
    }

    #[test]
    fn a_nan_gradient_never_reaches_an_aggregator() {
        let round = super::super::rounds::RoundRecord::open(1, 1, 0, i64::MAX, vec![]);
        let mut gradient = vec![0.1f32; PARAMETERS];
        gradient[17] = f32::NAN;
        let report = synapse_proto::link::v1::GradientReport {
            round: 1,
            model_version: 1,
            gradient,
            samples: 10,
            loss: 0.1,
        };
        let expect = intake::Expectation {
            open: Some(&round),
            now_unix_ms: 0,
            parameters: PARAMETERS,
            staleness_bound: 0,
            latest_version: 1,
        };
        assert_eq!(
            intake::check(&report, &expect),
            Err(intake::Refusal::NonFinite)
        );
    }

    #[test]
    fn privacy_noise_is_recorded_with_its_parameters() {
        let cfg = FederationConfig {
            dp_noise_sigma: 1.0,
            clip_norm: 2.0,
            ..FederationConfig::default()
        };
        let mut optimizer = Optimizer::new(OptimizerKind::Adam, 0.001, 0.9, 2);
        let clients = vec![
            Contribution {
                gradient: vec![1.0, 0.0],
                samples: 1,
            };
            4
        ];
        let update = apply_round(&cfg, &mut optimizer, &[0.0, 0.0], clients, 9).unwrap();
        assert_eq!(update.metrics["dp_noise_std"], 0.5);
        assert_eq!(update.metrics["dp_noise_sigma"], 1.0);
        assert_eq!(update.metrics["clip_norm"], 2.0);
    }
}
