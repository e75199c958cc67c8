//! `hybrid-histogram`: the policy of "Serverless in the Wild" (Shahrad et al., USENIX ATC
//! 2020). Per function, a histogram of idle times (1-minute bins over 4 hours): pre-warm at its
//! 5th percentile minus 10%, keep alive until its 99th percentile plus 10%. When the histogram
//! is not representative (too few idle times, or a flat one: bin-count CV below 2) fall back to
//! a fixed keep-alive of the histogram's range, as published; when most idle times fall beyond
//! the range, forecast the next idle time with ARIMA and keep the instance warm ±15% around it.
//!
//! Idle times are measured in whole minutes between active minutes, so an idle time of `k`
//! minutes lies between `k − 1` and `k + 1` minutes after an execution; the head is taken at
//! the lower edge and the tail at the upper edge of their bins before the margins.

use crate::forecast::{
    Arima, ArimaConfig, Forecaster, HistogramConfig, IdleTimeHistogram, MinuteCount,
};

use super::{HybridHistogramConfig, IntervalObservation, PoolDecision, PoolPolicy};

/// The hybrid histogram policy of one function.
pub struct HybridHistogram {
    config: HybridHistogramConfig,
    histogram: IdleTimeHistogram,
    /// ARIMA over the sequence of idle times, for the out-of-bounds case.
    idle_times: Arima,
    samples_seen: u32,
    minutes_since_active: u64,
}

impl HybridHistogram {
    /// A policy that has seen nothing yet.
    pub fn new(config: HybridHistogramConfig) -> Self {
        let histogram = IdleTimeHistogram::new(HistogramConfig {
            range_minutes: config.range_minutes,
        });
        Self {
            config,
            histogram,
            idle_times: Arima::new(ArimaConfig {
                p: 2,
                d: 0,
                forgetting: 0.98,
            }),
            samples_seen: 0,
            minutes_since_active: 0,
        }
    }

    fn keep_alive(&self, seconds: f64) -> PoolDecision {
        PoolDecision {
            pool_target: 0,
            keep_alive_s: seconds,
            prewarm_s: None,
        }
    }
}

impl PoolPolicy for HybridHistogram {
    fn observe(&mut self, observation: &IntervalObservation) {
        self.histogram.observe(observation.minute);
        if observation.minute.invocations > 0.0 {
            if self.histogram.samples() > self.samples_seen {
                // A new idle time ended with this minute: feed it to the ARIMA model.
                self.idle_times.observe(MinuteCount {
                    minute_of_day: observation.minute.minute_of_day,
                    invocations: (self.minutes_since_active + 1) as f64,
                });
                self.samples_seen = self.histogram.samples();
            }
            self.minutes_since_active = 0;
        } else {
            self.minutes_since_active += 1;
        }
    }

    fn decide(&mut self, _now_s: f64) -> PoolDecision {
        let c = &self.config;
        let h = &self.histogram;
        if h.samples() >= c.min_samples && h.out_of_bounds_fraction() > c.out_of_bounds_threshold {
            let next_min = self.idle_times.forecast_next().max(1.0);
            return PoolDecision {
                pool_target: 0,
                keep_alive_s: next_min * 60.0 * 1.15,
                prewarm_s: Some(next_min * 60.0 * 0.85),
            };
        }
        if h.samples() < c.min_samples || h.bin_cv() < c.cv_threshold {
            return self.keep_alive(c.fallback_keep_alive_s);
        }
        let (Some(head), Some(tail)) = (
            h.percentile(c.head_percentile),
            h.percentile(c.tail_percentile),
        ) else {
            return self.keep_alive(c.fallback_keep_alive_s);
        };
        let prewarm = (head as f64 - 1.0) * 60.0 * (1.0 - c.margin);
        PoolDecision {
            pool_target: 0,
            keep_alive_s: (tail as f64 + 1.0) * 60.0 * (1.0 + c.margin),
            prewarm_s: (prewarm > 0.0).then_some(prewarm),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observe(p: &mut HybridHistogram, counts: impl IntoIterator<Item = u32>) {
        for c in counts {
            p.observe(&IntervalObservation {
                minute: MinuteCount {
                    minute_of_day: 0,
                    invocations: f64::from(c),
                },
                mean_duration_s: 0.1,
                memory_mb: 100.0,
            });
        }
    }

    #[test]
    fn falls_back_to_the_range_before_it_has_seen_enough() {
        let mut p = HybridHistogram::new(HybridHistogramConfig::default());
        observe(&mut p, [1, 0, 0, 1]);
        let d = p.decide(0.0);
        assert_eq!(d.keep_alive_s, 14_400.0);
        assert_eq!(d.prewarm_s, None);
    }

    #[test]
    fn prewarms_a_regular_timer_at_its_head_and_keeps_it_to_its_tail() {
        let mut p = HybridHistogram::new(HybridHistogramConfig::default());
        observe(&mut p, (0..200).map(|m| u32::from(m % 10 == 0)));
        let d = p.decide(0.0);
        // Idle times of 10 minutes: warm from 9 min − 10% to 11 min + 10%.
        assert_eq!(d.prewarm_s, Some(9.0 * 60.0 * 0.9));
        assert!((d.keep_alive_s - 11.0 * 60.0 * 1.1).abs() < 1e-9);
    }

    #[test]
    fn a_flat_histogram_is_not_trusted() {
        let mut p = HybridHistogram::new(HybridHistogramConfig::default());
        let gaps = (1..=120u32)
            .flat_map(|g| std::iter::once(1).chain(std::iter::repeat_n(0, g as usize - 1)));
        observe(&mut p, gaps);
        assert_eq!(p.decide(0.0).keep_alive_s, 14_400.0);
    }
}
