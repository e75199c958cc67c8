//! Drives one policy over a whole trace with the virtual clock: every minute, each function's
//! policy is asked for its decision (having seen only the minutes before), the minute's
//! arrivals are placed uniformly at random inside it (seeded per function, so every policy
//! faces the very same arrivals), and the completed minute is then fed to the policy.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::forecast::{MinuteCount, ModelSource};
use crate::policy::{
    FleetPriorBuilder, IntervalObservation, PRIOR_REFRESH_INTERVALS, PolicyConfig, PolicySpec,
    PoolPolicy,
};
use crate::trace::Trace;

use super::sim::{FunctionSim, WindowTally};

/// Minutes between refreshes of the fleet prior (the idle times of every function).
pub const PRIOR_REFRESH_MINUTES: usize = PRIOR_REFRESH_INTERVALS;

/// Everything one run needs besides the policy.
pub struct RunSetup<'a> {
    pub trace: &'a Trace,
    pub config: &'a PolicyConfig,
    pub model: &'a ModelSource,
    /// Load time of a new instance, seconds (1 s in `EVALUATION.md`).
    pub load_s: f64,
}

/// Per-function tallies of one run.
#[derive(Debug, Clone)]
pub struct RunTallies {
    pub whole: Vec<WindowTally>,
    pub second_half: Vec<WindowTally>,
}

/// The seed of a function's arrival stream.
fn arrival_seed(seed: u64, function: usize) -> u64 {
    // SplitMix64 of the pair: well-spread, stable streams per (seed, function).
    let mut z = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(function as u64)
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Replays `spec` over the whole trace with arrivals drawn from `seed`.
pub fn replay(setup: &RunSetup<'_>, spec: &PolicySpec, seed: u64) -> RunTallies {
    let trace = setup.trace;
    let end_s = trace.minutes as f64 * 60.0;
    let mut policies: Vec<Box<dyn PoolPolicy>> = trace
        .functions
        .iter()
        .map(|_| spec.build(setup.config, setup.model))
        .collect();
    let mut sims: Vec<FunctionSim> = trace
        .functions
        .iter()
        .map(|f| {
            let duration_s = (f.duration_ms / 1000.0).max(0.001);
            FunctionSim::new(setup.load_s, duration_s, f.memory_mb, end_s)
        })
        .collect();
    let mut rngs: Vec<StdRng> = (0..trace.functions.len())
        .map(|i| StdRng::seed_from_u64(arrival_seed(seed, i)))
        .collect();
    let mut arrivals = Vec::new();
    for minute in 0..trace.minutes {
        if minute % PRIOR_REFRESH_MINUTES == 0 && minute > 0 {
            share_fleet_prior(&mut policies);
        }
        let now = minute as f64 * 60.0;
        let minute_of_day = (trace.first_minute + minute as u32) % 1440;
        for (i, f) in trace.functions.iter().enumerate() {
            let decision = policies[i].decide(now);
            let sim = &mut sims[i];
            sim.begin_interval(now, now + 60.0, decision);
            let n = f.counts[minute];
            arrivals.clear();
            arrivals.extend((0..n).map(|_| now + rngs[i].random::<f64>() * 60.0));
            arrivals.sort_by(f64::total_cmp);
            for &t in &arrivals {
                sim.arrive(t);
            }
            policies[i].observe(&IntervalObservation {
                minute: MinuteCount {
                    minute_of_day,
                    invocations: f64::from(n),
                },
                mean_duration_s: (f.duration_ms / 1000.0).max(0.001),
                memory_mb: f.memory_mb,
            });
        }
    }
    for sim in &mut sims {
        sim.finish();
    }
    RunTallies {
        whole: sims.iter().map(|s| s.whole).collect(),
        second_half: sims.iter().map(|s| s.second_half).collect(),
    }
}

/// Gives every policy the fleet's idle times (see [`FleetPriorBuilder`]).
fn share_fleet_prior(policies: &mut [Box<dyn PoolPolicy>]) {
    let mut builder = FleetPriorBuilder::default();
    for g in policies.iter().filter_map(|p| p.idle_gaps()) {
        builder.add(g);
    }
    let Some(prior) = builder.build() else {
        return;
    };
    for p in policies.iter_mut() {
        p.set_fleet_prior(prior.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrival_streams_differ_by_seed_and_function() {
        let seeds = [
            arrival_seed(1, 0),
            arrival_seed(1, 1),
            arrival_seed(2, 0),
            arrival_seed(2, 1),
        ];
        for i in 0..seeds.len() {
            for j in i + 1..seeds.len() {
                assert_ne!(seeds[i], seeds[j]);
            }
        }
    }
}
