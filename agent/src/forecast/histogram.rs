//! The idle-time histogram of "Serverless in the Wild": per function, how many minutes pass
//! between one active minute and the next, in 1-minute bins over a fixed range (4 hours by
//! default), with the idle times beyond the range counted apart (out of bounds).
//!
//! As a [`Forecaster`] it answers with the chance that the next minute is active given the
//! minutes already idle (the histogram's hazard), times the mean count of an active minute.

use serde::{Deserialize, Serialize};

use super::{Forecaster, MinuteCount};

/// Settings of the idle-time histogram.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HistogramConfig {
    /// Range of the histogram in minutes (one bin per minute). Default 240 (4 hours).
    pub range_minutes: usize,
}

impl Default for HistogramConfig {
    fn default() -> Self {
        Self { range_minutes: 240 }
    }
}

/// Idle times of one function, in minutes between active minutes.
#[derive(Debug, Clone)]
pub struct IdleTimeHistogram {
    /// `bins[k - 1]` counts idle times of `k` minutes, `1 <= k <= range`.
    bins: Vec<u32>,
    out_of_bounds: u32,
    samples: u32,
    /// Minutes observed so far.
    minutes: u64,
    /// Index of the last active minute.
    last_active: Option<u64>,
    active_minutes: u64,
    active_invocations: f64,
}

impl IdleTimeHistogram {
    /// An empty histogram.
    pub fn new(config: HistogramConfig) -> Self {
        Self {
            bins: vec![0; config.range_minutes.max(1)],
            out_of_bounds: 0,
            samples: 0,
            minutes: 0,
            last_active: None,
            active_minutes: 0,
            active_invocations: 0.0,
        }
    }

    /// Counts per bin: index `k - 1` holds idle times of `k` minutes.
    pub fn bins(&self) -> &[u32] {
        &self.bins
    }

    /// Idle times longer than the range.
    pub fn out_of_bounds(&self) -> u32 {
        self.out_of_bounds
    }

    /// All idle times recorded, in range or not.
    pub fn samples(&self) -> u32 {
        self.samples
    }

    /// Minutes since the last active minute (0 right after an active one), if any was active.
    pub fn minutes_idle(&self) -> Option<u64> {
        self.last_active.map(|a| self.minutes - 1 - a)
    }

    /// Minutes observed, and how many of them were active.
    pub fn activity(&self) -> (u64, u64) {
        (self.minutes, self.active_minutes)
    }

    /// Mean invocations in an active minute (0 before any).
    pub fn mean_active_count(&self) -> f64 {
        if self.active_minutes == 0 {
            0.0
        } else {
            self.active_invocations / self.active_minutes as f64
        }
    }

    /// The idle time (in minutes, a bin) at percentile `p` (0..=100) of the in-range samples.
    pub fn percentile(&self, p: f64) -> Option<usize> {
        let total: u64 = self.bins.iter().map(|&b| u64::from(b)).sum();
        if total == 0 {
            return None;
        }
        let rank = (p / 100.0 * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, &b) in self.bins.iter().enumerate() {
            seen += u64::from(b);
            if seen >= rank {
                return Some(i + 1);
            }
        }
        Some(self.bins.len())
    }

    /// Coefficient of variation of the bin counts: high when idle times cluster in few bins.
    pub fn bin_cv(&self) -> f64 {
        let n = self.bins.len() as f64;
        let mean = self.bins.iter().map(|&b| f64::from(b)).sum::<f64>() / n;
        if mean == 0.0 {
            return 0.0;
        }
        let var = self
            .bins
            .iter()
            .map(|&b| (f64::from(b) - mean).powi(2))
            .sum::<f64>()
            / n;
        var.sqrt() / mean
    }

    /// Share of idle times beyond the range.
    pub fn out_of_bounds_fraction(&self) -> f64 {
        if self.samples == 0 {
            0.0
        } else {
            f64::from(self.out_of_bounds) / f64::from(self.samples)
        }
    }

    /// Chance that an idle time of `k` minutes ends now given it lasted at least `k` minutes.
    fn hazard(&self, k: usize) -> Option<f64> {
        let at_least: u32 = self.bins.iter().skip(k - 1).sum::<u32>() + self.out_of_bounds;
        let here = self.bins.get(k - 1).copied().unwrap_or(0);
        (at_least > 0).then(|| f64::from(here) / f64::from(at_least))
    }
}

impl Forecaster for IdleTimeHistogram {
    fn name(&self) -> &'static str {
        "histogram"
    }

    fn observe(&mut self, minute: MinuteCount) {
        let index = self.minutes;
        self.minutes += 1;
        if minute.invocations <= 0.0 {
            return;
        }
        if let Some(last) = self.last_active {
            let gap = (index - last) as usize;
            self.samples += 1;
            match self.bins.get_mut(gap - 1) {
                Some(bin) => *bin += 1,
                None => self.out_of_bounds += 1,
            }
        }
        self.last_active = Some(index);
        self.active_minutes += 1;
        self.active_invocations += minute.invocations;
    }

    fn forecast_next(&self) -> f64 {
        let Some(idle) = self.minutes_idle() else {
            return 0.0;
        };
        let base = self.active_minutes as f64 / self.minutes.max(1) as f64;
        let p_active = self.hazard(idle as usize + 1).unwrap_or(base);
        p_active * self.mean_active_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(h: &mut IdleTimeHistogram, counts: &[u32]) {
        for &c in counts {
            h.observe(MinuteCount {
                minute_of_day: 0,
                invocations: f64::from(c),
            });
        }
    }

    #[test]
    fn records_minutes_between_active_minutes() {
        let mut h = IdleTimeHistogram::new(HistogramConfig { range_minutes: 4 });
        feed(&mut h, &[1, 0, 0, 2, 1, 0, 0, 0, 0, 0, 3]);
        assert_eq!(h.bins(), &[1, 0, 1, 0]);
        assert_eq!(h.out_of_bounds(), 1);
        assert_eq!(h.samples(), 3);
        assert_eq!(h.minutes_idle(), Some(0));
        assert!((h.mean_active_count() - 1.75).abs() < 1e-12);
    }

    #[test]
    fn a_timer_every_three_minutes_is_forecast_on_its_beat() {
        let mut h = IdleTimeHistogram::new(HistogramConfig::default());
        feed(&mut h, &[1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0]);
        assert_eq!(
            h.forecast_next(),
            0.0,
            "one minute idle: never seen an idle time of 2"
        );
        feed(&mut h, &[0]);
        assert_eq!(
            h.forecast_next(),
            1.0,
            "two minutes idle: every idle time was 3"
        );
        assert_eq!(h.percentile(5.0), Some(3));
        assert_eq!(h.percentile(99.0), Some(3));
        assert!(h.bin_cv() > 10.0, "all mass in one bin");
    }
}
