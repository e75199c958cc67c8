//! The keep-alive of our policy: choose when an instance should be warm after its execution
//! ends by weighing, for every 30-second slice of the idle time that follows, the expected
//! cold-start cost it saves against the idle memory it costs.
//!
//! Let `f(t)` be the chance that the next invocation arrives in slice `t` and `S(t)` the chance
//! that it has not arrived before the slice. Keeping the instance warm in slice `t` saves a
//! cold start with probability `f(t)` and wastes, on average, `30 s · (S(t) − f(t)/2)` of idle
//! instance time. With `cost_threshold` = the idle instance-seconds one avoided cold start is
//! worth, the gain of slice `t` is `cost_threshold · f(t) − 30 s · (S(t) − f(t)/2)`, and the
//! warm window is the run of consecutive slices with the largest total gain (a maximum-sum
//! run, found in one pass). A window that starts after the first slice becomes a pre-warm:
//! the instance is released and loaded again just before the window opens.
//!
//! Idle times come from per-minute counts ([`IdleGaps`]): two invocations in the same minute
//! are close (under a minute apart); an active minute followed `k` minutes later by the next
//! one leaves an idle time between `(k − 1)` and `(k + 1)` minutes, spread as the difference of
//! two uniform arrival offsets (a triangle centred on `k` minutes).

/// Slice of the idle time, seconds.
const SLICE_S: f64 = 30.0;

/// Where the idle times after an execution end fell, as weights (counts or probabilities).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct IdleGaps {
    /// Next invocation in the same minute.
    pub same_minute: f64,
    /// `by_minutes[k - 1]`: next active minute `k` minutes later.
    pub by_minutes: Vec<f64>,
    /// Next invocation later than the range, or never.
    pub beyond: f64,
}

impl IdleGaps {
    /// Total weight.
    pub fn total(&self) -> f64 {
        self.same_minute + self.by_minutes.iter().sum::<f64>() + self.beyond
    }

    /// Adds `other` scaled by `weight` (e.g. a prior of a few pseudo-observations).
    pub fn add_scaled(&mut self, other: &IdleGaps, weight: f64) {
        let total = other.total();
        if total <= 0.0 || weight <= 0.0 {
            return;
        }
        let s = weight / total;
        self.same_minute += other.same_minute * s;
        if self.by_minutes.len() < other.by_minutes.len() {
            self.by_minutes.resize(other.by_minutes.len(), 0.0);
        }
        for (a, b) in self.by_minutes.iter_mut().zip(&other.by_minutes) {
            *a += b * s;
        }
        self.beyond += other.beyond * s;
    }

    /// Probability of the next invocation in each 30-second slice after an execution end.
    fn slices(&self) -> Vec<f64> {
        let last = self
            .by_minutes
            .iter()
            .rposition(|&w| w > 0.0)
            .map_or(0, |i| i + 1);
        let total = self.total();
        let mut f = vec![0.0; 2 * last + 2];
        if total <= 0.0 {
            return f;
        }
        f[0] += 0.75 * self.same_minute / total;
        f[1] += 0.25 * self.same_minute / total;
        for (i, &w) in self.by_minutes[..last].iter().enumerate() {
            let k = i + 1;
            let p = w / total;
            for (slice, share) in [(2 * k - 2, 0.125), (2 * k - 1, 0.375), (2 * k, 0.375)] {
                f[slice] += share * p;
            }
            f[2 * k + 1] += 0.125 * p;
        }
        f
    }
}

/// When an instance is warm after its execution ends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WarmWindow {
    /// Start loading a released instance this long after the end; `None`: stay warm from it.
    pub prewarm_s: Option<f64>,
    /// Warm until this long after the end (0: release at once).
    pub keep_alive_s: f64,
}

/// The window of largest expected gain for `gaps`, valuing one avoided cold start at
/// `cost_threshold` idle instance-seconds; `load_s` is an instance's load time.
pub fn best_window(gaps: &IdleGaps, cost_threshold: f64, load_s: f64) -> WarmWindow {
    let f = gaps.slices();
    let mut survival = 1.0;
    let (mut best, mut best_range) = (0.0, None);
    let (mut run, mut run_start) = (0.0, 0);
    for (i, &fi) in f.iter().enumerate() {
        let gain = cost_threshold * fi - SLICE_S * (survival - fi / 2.0).max(0.0);
        survival -= fi;
        if run <= 0.0 {
            run = 0.0;
            run_start = i;
        }
        run += gain;
        if run > best {
            best = run;
            best_range = Some((run_start, i));
        }
    }
    match best_range {
        None => WarmWindow {
            prewarm_s: None,
            keep_alive_s: 0.0,
        },
        Some((start, end)) => WarmWindow {
            prewarm_s: (start > 0).then(|| (start as f64 * SLICE_S - load_s).max(0.0)),
            keep_alive_s: (end + 1) as f64 * SLICE_S,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gaps(by_minutes: &[f64], beyond: f64) -> IdleGaps {
        IdleGaps {
            same_minute: 0.0,
            by_minutes: by_minutes.to_vec(),
            beyond,
        }
    }

    #[test]
    fn a_timer_every_ten_minutes_is_prewarmed_around_its_beat() {
        let mut by = vec![0.0; 10];
        by[9] = 20.0;
        let w = best_window(&gaps(&by, 0.0), 600.0, 1.0);
        let pre = w.prewarm_s.expect("pre-warms");
        assert!((500.0..=541.0).contains(&pre), "{w:?}");
        assert!((630.0..=660.0).contains(&w.keep_alive_s), "{w:?}");
    }

    #[test]
    fn a_busy_function_stays_warm_from_the_end_of_its_execution() {
        let g = IdleGaps {
            same_minute: 100.0,
            by_minutes: vec![10.0],
            beyond: 0.0,
        };
        let w = best_window(&g, 60.0, 1.0);
        assert_eq!(w.prewarm_s, None);
        assert!(w.keep_alive_s >= 60.0, "{w:?}");
    }

    #[test]
    fn a_function_that_never_returns_is_released_at_once() {
        let w = best_window(&gaps(&[], 5.0), 1e6, 1.0);
        assert_eq!(w.keep_alive_s, 0.0);
    }

    #[test]
    fn the_threshold_trades_memory_for_cold_starts() {
        let g = gaps(&[1.0, 0.0, 2.0, 1.0, 0.0, 0.0, 3.0, 0.0, 1.0], 2.0);
        assert_eq!(
            best_window(&g, 1.0, 1.0).keep_alive_s,
            0.0,
            "cold starts are cheap"
        );
        let w = best_window(&g, 1e6, 1.0);
        assert_eq!(w.prewarm_s, None, "cold starts are dear: warm from the end");
        assert!(
            w.keep_alive_s >= 600.0,
            "covers the last idle time seen: {w:?}"
        );
    }
}
