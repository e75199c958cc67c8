//! Additive Holt-Winters exponential smoothing with a damped trend and one seasonal cycle
//! (hourly by default: timers that fire every 5, 10, 15, 30 or 60 minutes repeat every hour).

use serde::{Deserialize, Serialize};

use super::{Forecaster, MinuteCount};

/// Settings of Holt-Winters smoothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HoltWintersConfig {
    /// Level smoothing, 0..1. Default 0.3.
    pub alpha: f64,
    /// Trend smoothing, 0..1. Default 0.05.
    pub beta: f64,
    /// Seasonal smoothing, 0..1. Default 0.2.
    pub gamma: f64,
    /// Trend damping per minute, 0..1. Default 0.9.
    pub phi: f64,
    /// Length of the seasonal cycle in minutes. Default 60.
    pub season_minutes: usize,
}

impl Default for HoltWintersConfig {
    fn default() -> Self {
        Self {
            alpha: 0.3,
            beta: 0.05,
            gamma: 0.2,
            phi: 0.9,
            season_minutes: 60,
        }
    }
}

/// Holt-Winters state of one function.
#[derive(Debug, Clone)]
pub struct HoltWinters {
    config: HoltWintersConfig,
    level: f64,
    trend: f64,
    season: Vec<f64>,
    t: usize,
}

impl HoltWinters {
    /// A model that has seen nothing yet.
    pub fn new(config: HoltWintersConfig) -> Self {
        let m = config.season_minutes.max(1);
        Self {
            config,
            level: 0.0,
            trend: 0.0,
            season: vec![0.0; m],
            t: 0,
        }
    }

    fn damped_sum(&self, h: usize) -> f64 {
        let phi = self.config.phi;
        let mut sum = 0.0;
        let mut p = 1.0;
        for _ in 0..h {
            p *= phi;
            sum += p;
        }
        sum
    }
}

impl Forecaster for HoltWinters {
    fn name(&self) -> &'static str {
        "holt-winters"
    }

    fn observe(&mut self, minute: MinuteCount) {
        let y = minute.invocations;
        let m = self.season.len();
        let c = &self.config;
        let slot = self.t % m;
        if self.t == 0 {
            self.level = y;
        } else {
            let s = self.season[slot];
            let previous = self.level;
            self.level = c.alpha * (y - s) + (1.0 - c.alpha) * (previous + c.phi * self.trend);
            self.trend = c.beta * (self.level - previous) + (1.0 - c.beta) * c.phi * self.trend;
            self.season[slot] = c.gamma * (y - self.level) + (1.0 - c.gamma) * s;
        }
        self.t += 1;
    }

    fn forecast_next(&self) -> f64 {
        self.forecast(1)[0]
    }

    fn forecast(&self, horizon: usize) -> Vec<f64> {
        let m = self.season.len();
        (1..=horizon)
            .map(|h| {
                let s = self.season[(self.t + h - 1) % m];
                (self.level + self.damped_sum(h) * self.trend + s).max(0.0)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(f: &mut HoltWinters, counts: impl IntoIterator<Item = f64>) {
        for c in counts {
            f.observe(MinuteCount {
                minute_of_day: 0,
                invocations: c,
            });
        }
    }

    #[test]
    fn learns_a_constant_rate() {
        let mut f = HoltWinters::new(HoltWintersConfig::default());
        feed(&mut f, std::iter::repeat_n(7.0, 300));
        assert!(
            (f.forecast_next() - 7.0).abs() < 0.05,
            "{}",
            f.forecast_next()
        );
    }

    #[test]
    fn learns_a_timer_on_its_beat() {
        let config = HoltWintersConfig {
            season_minutes: 10,
            ..HoltWintersConfig::default()
        };
        let mut f = HoltWinters::new(config);
        feed(
            &mut f,
            (0..600).map(|i| if i % 10 == 0 { 10.0 } else { 0.0 }),
        );
        let next = f.forecast(10);
        assert!(next[0] > 5.0, "the beat comes next: {next:?}");
        assert!(
            next[1..].iter().all(|&v| v < 2.0),
            "quiet between beats: {next:?}"
        );
    }
}
