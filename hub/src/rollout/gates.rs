//! Gates: at the end of a step's bake time the hosts the rollout updated are compared with
//! the hosts it has not updated yet, over the same window (what each reported since the
//! step began). A gate fails when the updated hosts are worse by more than its threshold;
//! every result carries both numbers and the threshold, for the history.

use serde::{Deserialize, Serialize};

use crate::config::GateThresholds;

/// What a group of hosts reported over a window (the difference of two cumulative
/// snapshots).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Window {
    pub invocations: u64,
    pub failed: u64,
    pub cold: u64,
    pub latency_bounds_s: Vec<f64>,
    pub latency_counts: Vec<u64>,
    /// Sum and count of absolute forecast errors (models).
    pub forecast_error_sum: f64,
    pub forecasts: u64,
}

impl Window {
    /// Adds another window (another host or function) to this one.
    pub fn add(&mut self, other: &Window) {
        self.invocations += other.invocations;
        self.failed += other.failed;
        self.cold += other.cold;
        self.forecast_error_sum += other.forecast_error_sum;
        self.forecasts += other.forecasts;
        if other.latency_bounds_s.is_empty() {
            return;
        }
        if self.latency_bounds_s != other.latency_bounds_s {
            if !self.latency_bounds_s.is_empty() {
                // Different buckets cannot be added; the larger sample wins.
                let mine: u64 = self.latency_counts.iter().sum();
                let theirs: u64 = other.latency_counts.iter().sum();
                if mine >= theirs {
                    return;
                }
            }
            self.latency_bounds_s = other.latency_bounds_s.clone();
            self.latency_counts = other.latency_counts.clone();
            return;
        }
        for (a, b) in self.latency_counts.iter_mut().zip(&other.latency_counts) {
            *a += b;
        }
    }

    /// `self - earlier`, for cumulative totals (a counter that went down, as after a
    /// registry reset, counts from zero).
    pub fn since(&self, earlier: &Window) -> Window {
        let counts = if self.latency_bounds_s == earlier.latency_bounds_s {
            self.latency_counts
                .iter()
                .zip(earlier.latency_counts.iter().chain(std::iter::repeat(&0)))
                .map(|(now, then)| now.saturating_sub(*then))
                .collect()
        } else {
            self.latency_counts.clone()
        };
        Window {
            invocations: self.invocations.saturating_sub(earlier.invocations),
            failed: self.failed.saturating_sub(earlier.failed),
            cold: self.cold.saturating_sub(earlier.cold),
            latency_bounds_s: self.latency_bounds_s.clone(),
            latency_counts: counts,
            forecast_error_sum: (self.forecast_error_sum - earlier.forecast_error_sum).max(0.0),
            forecasts: self.forecasts.saturating_sub(earlier.forecasts),
        }
    }

    pub fn error_rate(&self) -> f64 {
        ratio(self.failed, self.invocations)
    }

    pub fn cold_rate(&self) -> f64 {
        ratio(self.cold, self.invocations)
    }

    /// Upper bound of the bucket holding the 99th percentile; `None` without samples. The
    /// last bucket is open: its lower bound is reported.
    pub fn p99_s(&self) -> Option<f64> {
        let total: u64 = self.latency_counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = (total as f64 * 0.99).ceil() as u64;
        let mut seen = 0;
        let last = self.latency_bounds_s.len().saturating_sub(1);
        for (i, count) in self.latency_counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                if i == last && i > 0 {
                    return self.latency_bounds_s.get(i - 1).copied();
                }
                return self.latency_bounds_s.get(i).copied();
            }
        }
        None
    }

    pub fn mean_forecast_error(&self) -> Option<f64> {
        (self.forecasts > 0).then(|| self.forecast_error_sum / self.forecasts as f64)
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// How the updated hosts took the version.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Health {
    pub updated: usize,
    /// Hosts that reported they could not apply the version, with the first reason.
    pub apply_failures: usize,
    pub first_failure: Option<String>,
    /// Connected hosts that still do not report the version at the end of the bake.
    pub not_running: usize,
    /// Hosts away: they catch up when they return and do not count against the gate.
    pub offline: usize,
}

/// Which gates a target is judged by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GateSet {
    pub invocations: bool,
    pub forecast: bool,
}

/// One gate's verdict, with its numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateResult {
    pub gate: String,
    pub passed: bool,
    pub updated: f64,
    pub baseline: f64,
    pub threshold: f64,
    pub detail: String,
}

impl GateResult {
    fn new(gate: &str, passed: bool, updated: f64, baseline: f64, threshold: f64) -> Self {
        Self {
            gate: gate.into(),
            passed,
            updated,
            baseline,
            threshold,
            detail: String::new(),
        }
    }

    fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }
}

/// Judges a step: agent health always; invocation gates (error rate, cold-start rate, p99)
/// and the forecast gate when `set` asks for them and the updated hosts saw enough traffic.
pub fn evaluate(
    set: GateSet,
    updated: &Window,
    baseline: &Window,
    health: &Health,
    t: &GateThresholds,
) -> Vec<GateResult> {
    let mut results = Vec::new();
    let failures = (health.apply_failures + health.not_running) as f64;
    results.push(
        GateResult::new(
            "agent_health",
            failures <= t.max_apply_failures as f64,
            failures,
            0.0,
            t.max_apply_failures as f64,
        )
        .detail(format!(
            "{} updated: {} could not apply{}, {} not running the version, {} offline (catch up later)",
            health.updated,
            health.apply_failures,
            health
                .first_failure
                .as_ref()
                .map(|f| format!(" ({f})"))
                .unwrap_or_default(),
            health.not_running,
            health.offline
        )),
    );
    if set.invocations {
        if updated.invocations < t.min_invocations {
            results.push(
                GateResult::new(
                    "invocations",
                    true,
                    updated.invocations as f64,
                    baseline.invocations as f64,
                    t.min_invocations as f64,
                )
                .detail("too few invocations on the updated hosts to judge error rate, cold starts or p99"),
            );
        } else {
            let (u, b) = (updated.error_rate(), baseline.error_rate());
            results.push(
                GateResult::new(
                    "error_rate",
                    u <= b + t.max_error_rate_increase,
                    u,
                    b,
                    b + t.max_error_rate_increase,
                )
                .detail(format!(
                    "{}/{} failed on updated hosts, {}/{} on the others",
                    updated.failed, updated.invocations, baseline.failed, baseline.invocations
                )),
            );
            let (u, b) = (updated.cold_rate(), baseline.cold_rate());
            results.push(GateResult::new(
                "cold_start_rate",
                u <= b + t.max_cold_start_rate_increase,
                u,
                b,
                b + t.max_cold_start_rate_increase,
            ));
            match (updated.p99_s(), baseline.p99_s()) {
                (Some(u), Some(b)) => {
                    let limit = b * t.max_p99_ratio + t.p99_slack.as_secs_f64();
                    results.push(GateResult::new("p99_latency_s", u <= limit, u, b, limit));
                }
                (u, _) => results.push(
                    GateResult::new("p99_latency_s", true, u.unwrap_or(0.0), 0.0, 0.0)
                        .detail("no latency of hosts not yet updated to compare with"),
                ),
            }
        }
    }
    if set.forecast {
        match (
            updated.mean_forecast_error(),
            baseline.mean_forecast_error(),
        ) {
            (Some(u), Some(b)) => {
                let limit = b * t.max_forecast_error_ratio;
                results.push(
                    GateResult::new("forecast_error", u <= limit, u, b, limit).detail(format!(
                        "mean absolute error over {} and {} forecasts",
                        updated.forecasts, baseline.forecasts
                    )),
                );
            }
            (u, _) => results.push(
                GateResult::new("forecast_error", true, u.unwrap_or(0.0), 0.0, 0.0)
                    .detail("no forecast errors of both groups to compare"),
            ),
        }
    }
    results
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(invocations: u64, failed: u64, latency_counts: [u64; 3]) -> Window {
        Window {
            invocations,
            failed,
            latency_bounds_s: vec![0.01, 0.1, 1.0],
            latency_counts: latency_counts.to_vec(),
            ..Default::default()
        }
    }

    fn all() -> GateSet {
        GateSet {
            invocations: true,
            forecast: false,
        }
    }

    fn failed(results: &[GateResult]) -> Vec<&str> {
        results
            .iter()
            .filter(|r| !r.passed)
            .map(|r| r.gate.as_str())
            .collect()
    }

    #[test]
    fn an_updated_group_that_fails_every_invocation_fails_the_error_gate_with_its_numbers() {
        let t = GateThresholds::default();
        let results = evaluate(
            all(),
            &window(40, 40, [40, 0, 0]),
            &window(100, 1, [100, 0, 0]),
            &Health::default(),
            &t,
        );
        assert_eq!(failed(&results), ["error_rate"]);
        let gate = results.iter().find(|r| r.gate == "error_rate").unwrap();
        assert_eq!((gate.updated, gate.baseline), (1.0, 0.01));
        assert!(gate.detail.contains("40/40"), "{}", gate.detail);
    }

    #[test]
    fn a_slower_p99_fails_and_an_equal_one_passes() {
        let t = GateThresholds::default();
        let base = window(100, 0, [100, 0, 0]);
        let slow = evaluate(
            all(),
            &window(100, 0, [0, 0, 100]),
            &base,
            &Health::default(),
            &t,
        );
        assert_eq!(failed(&slow), ["p99_latency_s"]);
        let same = evaluate(all(), &base, &base, &Health::default(), &t);
        assert!(failed(&same).is_empty(), "{same:?}");
    }

    #[test]
    fn a_host_that_cannot_apply_fails_agent_health() {
        let health = Health {
            updated: 3,
            apply_failures: 1,
            first_failure: Some("edge-1: bad spec".into()),
            ..Default::default()
        };
        let results = evaluate(
            all(),
            &Window::default(),
            &Window::default(),
            &health,
            &GateThresholds::default(),
        );
        assert_eq!(failed(&results), ["agent_health"]);
        assert!(results[0].detail.contains("bad spec"));
    }

    #[test]
    fn too_little_traffic_is_said_and_does_not_judge_rates() {
        let results = evaluate(
            all(),
            &window(1, 1, [1, 0, 0]),
            &window(100, 0, [100, 0, 0]),
            &Health::default(),
            &GateThresholds::default(),
        );
        assert!(failed(&results).is_empty());
        assert!(results.iter().any(|r| r.gate == "invocations"));
    }

    #[test]
    fn a_worse_forecaster_fails_the_forecast_gate() {
        let set = GateSet {
            invocations: false,
            forecast: true,
        };
        let worse = Window {
            forecast_error_sum: 30.0,
            forecasts: 10,
            ..Default::default()
        };
        let base = Window {
            forecast_error_sum: 20.0,
            forecasts: 10,
            ..Default::default()
        };
        let t = GateThresholds::default();
        let results = evaluate(set, &worse, &base, &Health::default(), &t);
        assert_eq!(failed(&results), ["forecast_error"]);
        let results = evaluate(set, &base, &worse, &Health::default(), &t);
        assert!(failed(&results).is_empty());
    }

    #[test]
    fn a_window_is_the_difference_of_two_snapshots() {
        let later = window(50, 5, [10, 20, 20]);
        let earlier = window(20, 1, [5, 10, 5]);
        assert_eq!(later.since(&earlier), window(30, 4, [5, 10, 15]));
        assert_eq!(window(10, 0, [9, 1, 0]).p99_s(), Some(0.1));
        assert_eq!(
            window(10, 0, [0, 0, 10]).p99_s(),
            Some(0.1),
            "the open last bucket reports its lower bound"
        );
    }
}
