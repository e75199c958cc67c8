//! The measures of `EVALUATION.md` over one replay: app cold-start % (p75, p50, mean over
//! functions with at least one invocation in the window), overall cold-start %, wasted memory,
//! and the floor where only each function's first call is cold.

use super::sim::WindowTally;

/// The measures of one policy over one window.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Summary {
    pub p75_app_cold_start_pct: f64,
    pub p50_app_cold_start_pct: f64,
    pub mean_app_cold_start_pct: f64,
    pub overall_cold_start_pct: f64,
    pub wasted_memory_mb_s: f64,
    pub invocations: u64,
    pub cold_starts: u64,
}

/// Summarises per-function tallies.
pub fn summarize(tallies: &[WindowTally]) -> Summary {
    let mut app: Vec<f64> = tallies
        .iter()
        .filter(|t| t.invocations > 0)
        .map(|t| 100.0 * t.cold_starts as f64 / t.invocations as f64)
        .collect();
    app.sort_by(f64::total_cmp);
    let invocations: u64 = tallies.iter().map(|t| t.invocations).sum();
    let cold_starts: u64 = tallies.iter().map(|t| t.cold_starts).sum();
    Summary {
        p75_app_cold_start_pct: percentile(&app, 75.0),
        p50_app_cold_start_pct: percentile(&app, 50.0),
        mean_app_cold_start_pct: if app.is_empty() {
            0.0
        } else {
            app.iter().sum::<f64>() / app.len() as f64
        },
        overall_cold_start_pct: if invocations == 0 {
            0.0
        } else {
            100.0 * cold_starts as f64 / invocations as f64
        },
        wasted_memory_mb_s: tallies.iter().map(|t| t.wasted_mb_s).sum(),
        invocations,
        cold_starts,
    }
}

/// Percentile of sorted values with linear interpolation between closest ranks.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    match sorted.len() {
        0 => 0.0,
        1 => sorted[0],
        n => {
            let rank = p / 100.0 * (n - 1) as f64;
            let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
            sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64)
        }
    }
}

/// The floor: only each function's first call of the trace is cold. `counts` are the
/// functions' per-minute counts; `from_minute` starts the window.
pub fn floor(counts: &[&[u32]], from_minute: usize) -> Summary {
    let tallies: Vec<WindowTally> = counts
        .iter()
        .map(|c| {
            let first = c.iter().position(|&n| n > 0);
            let invocations: u64 = c[from_minute.min(c.len())..]
                .iter()
                .map(|&n| u64::from(n))
                .sum();
            WindowTally {
                invocations,
                cold_starts: u64::from(first.is_some_and(|f| f >= from_minute)),
                wasted_mb_s: 0.0,
            }
        })
        .collect();
    summarize(&tallies)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(invocations: u64, cold_starts: u64) -> WindowTally {
        WindowTally {
            invocations,
            cold_starts,
            wasted_mb_s: 1.0,
        }
    }

    #[test]
    fn app_percentiles_skip_functions_without_calls() {
        let s = summarize(&[
            tally(4, 1),
            tally(2, 2),
            tally(0, 0),
            tally(10, 0),
            tally(5, 1),
        ]);
        // App cold %: 0, 20, 25, 100 → p50 = 22.5, p75 = 43.75.
        assert!((s.p50_app_cold_start_pct - 22.5).abs() < 1e-9);
        assert!((s.p75_app_cold_start_pct - 43.75).abs() < 1e-9);
        assert!((s.mean_app_cold_start_pct - 36.25).abs() < 1e-9);
        assert!((s.overall_cold_start_pct - 4.0 / 21.0 * 100.0).abs() < 1e-9);
        assert_eq!(s.wasted_memory_mb_s, 5.0);
    }

    #[test]
    fn the_floor_counts_only_first_calls() {
        let a = [1u32, 0, 1, 1];
        let b = [0u32, 0, 0, 2];
        let whole = floor(&[&a, &b], 0);
        assert_eq!(whole.cold_starts, 2);
        assert_eq!(whole.invocations, 5);
        let second = floor(&[&a, &b], 2);
        assert_eq!(second.cold_starts, 1, "a's first call is in the first half");
        assert_eq!(second.invocations, 4);
    }
}
