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
    /// Active minutes seen (not part of the distribution: how often the function is called).
    pub active_minutes: f64,
    /// Minutes since the last active minute: an idle time still running (censored), not yet
    /// part of the distribution.
    pub open_minutes: f64,
}

/// What the fleet's functions tell a function about idle times: the mean of their idle-time
/// distributions (each function counts once), and how many minutes a function is active on
/// average.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FleetPrior {
    pub gaps: IdleGaps,
    pub mean_active_minutes: f64,
}

impl IdleGaps {
    /// Idle times between active minutes recorded (in range or beyond).
    pub fn between_minutes(&self) -> f64 {
        self.by_minutes.iter().sum::<f64>() + self.beyond
    }

    /// This function's share of a fleet prior: its idle times, plus the idle time still
    /// running counted as one more that ends somewhere later within the range (uniformly) —
    /// so functions that have been quiet for long teach the fleet that long idle times exist.
    /// Normalised to total 1; `None` before the function was active.
    pub fn with_open_idle_time(&self) -> Option<IdleGaps> {
        if self.active_minutes <= 0.0 {
            return None;
        }
        let mut out = self.clone();
        let range = out.by_minutes.len();
        let from = self.open_minutes as usize + 1;
        if from <= range {
            let share = 1.0 / (range - from + 1) as f64;
            for bin in &mut out.by_minutes[from - 1..] {
                *bin += share;
            }
        } else {
            out.beyond += 1.0;
        }
        let mut normalised = IdleGaps::default();
        normalised.add_scaled(&out, 1.0);
        Some(normalised)
    }

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
    /// An idle time of `k` minutes is spread as a triangle centred on `k` minutes with half
    /// width `max(1, bandwidth · k)` minutes (1 minute: the spread of arrivals inside their
    /// minutes; wider when few idle times were seen, so a single one is not taken literally).
    fn slices(&self, bandwidth: f64) -> Vec<f64> {
        let total = self.total();
        let mut f = vec![0.0; 2];
        if total <= 0.0 {
            return f;
        }
        f[0] += 0.75 * self.same_minute / total;
        f[1] += 0.25 * self.same_minute / total;
        for (i, &w) in self.by_minutes.iter().enumerate() {
            if w > 0.0 {
                let k = (i + 1) as f64;
                spread(&mut f, 60.0 * k, 60.0 * (bandwidth * k).max(1.0), w / total);
            }
        }
        f
    }
}

/// Adds probability `p` spread as a triangle centred on `centre_s` with half width `half_s`.
fn spread(f: &mut Vec<f64>, centre_s: f64, half_s: f64, p: f64) {
    let cdf = |x: f64| {
        let u = ((x - centre_s) / half_s).clamp(-1.0, 1.0);
        if u < 0.0 {
            0.5 * (1.0 + u) * (1.0 + u)
        } else {
            1.0 - 0.5 * (1.0 - u) * (1.0 - u)
        }
    };
    let first = ((centre_s - half_s).max(0.0) / SLICE_S).floor() as usize;
    let last = ((centre_s + half_s) / SLICE_S).ceil() as usize;
    if f.len() < last + 1 {
        f.resize(last + 1, 0.0);
    }
    for (i, slot) in f.iter_mut().enumerate().take(last + 1).skip(first) {
        let (a, b) = (i as f64 * SLICE_S, (i + 1) as f64 * SLICE_S);
        // Mass that would fall before 0 (arrivals during the execution) stays in slice 0.
        let lo = if i == 0 { 0.0 } else { cdf(a) };
        *slot += p * (cdf(b) - lo);
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
/// `cost_threshold` idle instance-seconds. Idle times are counted from the end of an execution
/// of `duration_s` (arrivals while it runs need another instance and are not the window's
/// business); `load_s` is an instance's load time; `bandwidth` widens each idle time into its
/// neighbourhood, relative to its length (see [`IdleGaps`]).
pub fn best_window(
    gaps: &IdleGaps,
    cost_threshold: f64,
    duration_s: f64,
    load_s: f64,
    bandwidth: f64,
) -> WarmWindow {
    let f = gaps.slices(bandwidth);
    let mut survival = 1.0;
    let (mut best, mut best_range) = (0.0, None);
    let (mut run, mut run_start) = (0.0, 0);
    let first = (duration_s / SLICE_S).floor() as usize;
    for (i, &fi) in f.iter().enumerate() {
        if i < first {
            survival -= fi;
            continue;
        }
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
            prewarm_s: (start > first)
                .then(|| (start as f64 * SLICE_S - duration_s - load_s).max(0.0)),
            keep_alive_s: ((end + 1) as f64 * SLICE_S - duration_s).max(0.0),
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
            active_minutes: 0.0,
            open_minutes: 0.0,
        }
    }

    #[test]
    fn a_timer_every_ten_minutes_is_prewarmed_around_its_beat() {
        let mut by = vec![0.0; 10];
        by[9] = 20.0;
        let w = best_window(&gaps(&by, 0.0), 600.0, 0.0, 1.0, 0.0);
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
            active_minutes: 11.0,
            open_minutes: 0.0,
        };
        let w = best_window(&g, 60.0, 0.0, 1.0, 0.0);
        assert_eq!(w.prewarm_s, None);
        assert!(w.keep_alive_s >= 60.0, "{w:?}");
    }

    #[test]
    fn a_function_that_never_returns_is_released_at_once() {
        let w = best_window(&gaps(&[], 5.0), 1e6, 0.0, 1.0, 0.0);
        assert_eq!(w.keep_alive_s, 0.0);
    }

    #[test]
    fn idle_times_are_counted_from_the_end_of_a_long_execution() {
        let mut by = vec![0.0; 10];
        by[9] = 20.0;
        let short = best_window(&gaps(&by, 0.0), 600.0, 0.0, 1.0, 0.0);
        let long = best_window(&gaps(&by, 0.0), 600.0, 120.0, 1.0, 0.0);
        assert!((short.keep_alive_s - long.keep_alive_s - 120.0).abs() < 1e-9);
        let (a, b) = (
            short.prewarm_s.expect("pre-warms"),
            long.prewarm_s.expect("pre-warms"),
        );
        assert!((a - b - 120.0).abs() < 1e-9, "{short:?} {long:?}");
    }

    #[test]
    fn slices_hold_all_the_probability() {
        let g = gaps(&[1.0, 0.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 3.0], 2.0);
        for bandwidth in [0.0, 0.3, 1.0] {
            let sum: f64 = g.slices(bandwidth).iter().sum();
            assert!((sum - 6.0 / 8.0).abs() < 1e-9, "{bandwidth}: {sum}");
        }
    }

    #[test]
    fn a_single_long_idle_time_is_spread_when_few_were_seen() {
        let mut by = vec![0.0; 100];
        by[99] = 1.0;
        let g = gaps(&by, 0.0);
        let narrow = g.slices(0.0).iter().filter(|&&p| p > 0.0).count();
        let wide = g.slices(0.3).iter().filter(|&&p| p > 0.0).count();
        assert_eq!(narrow, 4);
        assert!(wide > 100, "{wide}");
    }

    #[test]
    fn the_threshold_trades_memory_for_cold_starts() {
        let g = gaps(&[1.0, 0.0, 2.0, 1.0, 0.0, 0.0, 3.0, 0.0, 1.0], 2.0);
        assert_eq!(
            best_window(&g, 1.0, 0.0, 1.0, 0.0).keep_alive_s,
            0.0,
            "cold starts are cheap"
        );
        let w = best_window(&g, 1e6, 0.0, 1.0, 0.0);
        assert_eq!(w.prewarm_s, None, "cold starts are dear: warm from the end");
        assert!(
            w.keep_alive_s >= 600.0,
            "covers the last idle time seen: {w:?}"
        );
    }
}
