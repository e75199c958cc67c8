//! Which trace functions a drive replays and when each invocation is sent (pure).
//!
//! Functions are picked deterministically: among the trace's functions with at least two
//! invocations in the window and no minute above the rate cap, `count` at evenly spaced ranks
//! of their total invocations, so that a drive mixes busy and rarely-called functions. Each
//! minute's `n` invocations are placed uniformly at random inside that minute with a seeded
//! generator (as the replay does, `EVALUATION.md`), then the trace clock is compressed by
//! `speed`.

use rand::{Rng as _, SeedableRng as _, rngs::StdRng};

use crate::trace::{FunctionTrace, Trace};

/// What part of a trace to drive and how fast.
#[derive(Debug, Clone, PartialEq)]
pub struct DrivePlan {
    /// First minute of the window, as an index into the trace's columns.
    pub start_minute: usize,
    /// Minutes of trace time to drive.
    pub minutes: usize,
    /// Trace seconds per wall-clock second.
    pub speed: f64,
    /// Functions to drive.
    pub count: usize,
    /// Functions with a minute above this many invocations are left out (the machine driving
    /// and serving them is small).
    pub max_per_minute: u32,
    pub seed: u64,
}

/// One trace function picked for the drive.
#[derive(Debug, Clone, PartialEq)]
pub struct Picked {
    /// Index of the function in the trace.
    pub index: usize,
    /// Invocations in the window.
    pub invocations: u64,
}

/// One invocation to send: when (wall seconds from the drive's start) and which picked
/// function (index into the picked list).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Arrival {
    pub at_s: f64,
    pub function: usize,
}

fn window<'a>(f: &'a FunctionTrace, plan: &DrivePlan) -> &'a [u32] {
    let end = (plan.start_minute + plan.minutes).min(f.counts.len());
    f.counts.get(plan.start_minute..end).unwrap_or(&[])
}

/// The functions of `trace` that `plan` drives, busiest first.
pub fn pick(trace: &Trace, plan: &DrivePlan) -> Vec<Picked> {
    let mut eligible: Vec<Picked> = trace
        .functions
        .iter()
        .enumerate()
        .filter_map(|(index, f)| {
            let counts = window(f, plan);
            let invocations: u64 = counts.iter().map(|&c| u64::from(c)).sum();
            let peak = counts.iter().copied().max().unwrap_or(0);
            (invocations >= 2 && peak <= plan.max_per_minute)
                .then_some(Picked { index, invocations })
        })
        .collect();
    eligible.sort_by(|a, b| {
        b.invocations
            .cmp(&a.invocations)
            .then(a.index.cmp(&b.index))
    });
    let count = plan.count.min(eligible.len());
    if count == 0 {
        return Vec::new();
    }
    let step = eligible.len() as f64 / count as f64;
    (0..count)
        .map(|k| eligible[(k as f64 * step) as usize].clone())
        .collect()
}

/// Every invocation of the picked functions in the window, in time order.
pub fn arrivals(trace: &Trace, picked: &[Picked], plan: &DrivePlan) -> Vec<Arrival> {
    let mut rng = StdRng::seed_from_u64(plan.seed);
    let mut out = Vec::new();
    for (function, p) in picked.iter().enumerate() {
        for (minute, &n) in window(&trace.functions[p.index], plan).iter().enumerate() {
            for _ in 0..n {
                let trace_s = (minute as f64 + rng.random::<f64>()) * 60.0;
                out.push(Arrival {
                    at_s: trace_s / plan.speed,
                    function,
                });
            }
        }
    }
    out.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trace(counts: &[&[u32]]) -> Trace {
        Trace {
            name: "t".into(),
            first_minute: 0,
            minutes: counts[0].len(),
            functions: counts
                .iter()
                .enumerate()
                .map(|(i, c)| FunctionTrace {
                    owner: String::new(),
                    app: format!("a{i}"),
                    function: format!("f{i}"),
                    trigger: "http".into(),
                    counts: c.to_vec(),
                    duration_ms: 10.0,
                    memory_mb: 128.0,
                })
                .collect(),
            joined_by_app: 0,
        }
    }

    fn plan(count: usize) -> DrivePlan {
        DrivePlan {
            start_minute: 0,
            minutes: 3,
            speed: 60.0,
            count,
            max_per_minute: 10,
            seed: 1,
        }
    }

    #[test]
    fn picks_skip_single_calls_and_rate_spikes_and_spread_over_ranks() {
        let t = trace(&[
            &[1, 0, 0],  // one call: nothing to keep warm for
            &[50, 0, 0], // over the rate cap
            &[5, 5, 5],  // 15
            &[1, 0, 1],  // 2
            &[3, 3, 3],  // 9
            &[2, 2, 0],  // 4
        ]);
        let picked: Vec<usize> = pick(&t, &plan(2)).iter().map(|p| p.index).collect();
        assert_eq!(picked, vec![2, 5], "ranks 0 and 2 of [15, 9, 4, 2]");
        assert_eq!(pick(&t, &plan(10)).len(), 4);
    }

    #[test]
    fn arrivals_keep_each_minutes_count_compressed_by_speed_and_follow_the_seed() {
        let t = trace(&[&[2, 0, 3], &[1, 1, 0]]);
        let picked = pick(&t, &plan(2));
        let a = arrivals(&t, &picked, &plan(2));
        assert_eq!(a.len(), 7);
        assert!(a.windows(2).all(|w| w[0].at_s <= w[1].at_s));
        let busiest = picked.iter().position(|p| p.index == 0).unwrap();
        let in_third_minute = a
            .iter()
            .filter(|x| x.function == busiest && x.at_s >= 2.0 && x.at_s < 3.0)
            .count();
        assert_eq!(in_third_minute, 3, "minute 3 of 60 s lasts 1 s at speed 60");
        assert_eq!(a, arrivals(&t, &picked, &plan(2)));
        let other_seed = DrivePlan { seed: 2, ..plan(2) };
        assert_ne!(a, arrivals(&t, &picked, &other_seed));
    }
}
