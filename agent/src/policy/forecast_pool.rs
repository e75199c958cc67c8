//! `forecast`: our policy. The pool target follows the demand forecast: the expected
//! concurrency (forecast rate × `prewarm_buffer` × mean duration) sized into instances by the
//! cost of the cold starts an instance avoids against its idle time ([`super::pool_size`]),
//! clamped to `min_pool..=max_pool`. The keep-alive / pre-warm window weighs the cost of a cold
//! start against the idle memory it would save ([`super::keep_alive`]), over the function's
//! idle times blended with the fleet's. One knob, `keep_alive.cost_threshold`, prices a cold
//! start for both.

use std::sync::Arc;

use crate::forecast::{self, ForecastConfig, Forecaster, ModelSource};

use super::keep_alive::{FleetPrior, IdleGaps, WarmWindow, best_window};
use super::pool_size::pool_for_load;
use super::{ForecastPoolConfig, IntervalObservation, PoolDecision, PoolPolicy};

/// Our policy for one function.
pub struct ForecastPool {
    config: ForecastPoolConfig,
    forecaster: Box<dyn Forecaster>,
    gaps: IdleGaps,
    prior: Option<Arc<FleetPrior>>,
    minutes: u64,
    last_active: Option<u64>,
    duration_s: f64,
    window: Option<WarmWindow>,
}

impl ForecastPool {
    /// A policy that has seen nothing yet. `prior` holds idle times of other functions
    /// (weighted by `keep_alive.prior_weight`); `model` is the shared neural model.
    pub fn new(
        config: ForecastPoolConfig,
        forecast: &ForecastConfig,
        model: &ModelSource,
        prior: Option<Arc<FleetPrior>>,
    ) -> Self {
        let forecaster = forecast::build(config.forecaster, forecast, model);
        let range = config.keep_alive.range_minutes.max(1);
        Self {
            config,
            forecaster,
            gaps: IdleGaps {
                by_minutes: vec![0.0; range],
                ..IdleGaps::default()
            },
            prior,
            minutes: 0,
            last_active: None,
            duration_s: 0.0,
            window: None,
        }
    }

    /// What one avoided cold start of this function is worth, idle instance-seconds.
    fn cold_start_value(&self) -> f64 {
        let ka = &self.config.keep_alive;
        let fleet = self.prior.as_ref().map_or(0.0, |p| p.mean_active_minutes);
        if ka.rarity_weighting && fleet > 0.0 {
            let calls = (self.gaps.active_minutes + self.gaps.same_minute).max(1.0);
            let weighted = ka.cost_threshold * (1.0 + fleet / calls);
            // No cold start is worth more idle time than the longest window considered.
            weighted.min((ka.range_minutes as f64 * 60.0).max(ka.cost_threshold))
        } else {
            ka.cost_threshold
        }
    }

    /// Whether the fleet prior shapes the window yet: once the policy has watched for at
    /// least the classic keep-alive (`initial_keep_alive_s`). Before, no function can have
    /// shown the fleet an idle time that long, and a window cut shorter on so little evidence
    /// would release instances the classic keep-alive keeps — an hourly timer's second call
    /// found cold because the first minutes of history knew nothing of hour-long idle times.
    fn prior_in_force(&self) -> bool {
        self.minutes as f64 * 60.0 >= self.config.keep_alive.initial_keep_alive_s
    }

    fn warm_window(&mut self) -> WarmWindow {
        if let Some(w) = self.window {
            return w;
        }
        let ka = &self.config.keep_alive;
        let prior = self.prior.as_ref().filter(|_| self.prior_in_force());
        let prior_total = prior.map_or(0.0, |p| p.gaps.total());
        if self.gaps.total() <= 0.0 && (prior_total <= 0.0 || ka.prior_weight <= 0.0) {
            // Nothing known yet, not even about the fleet: the classic fixed keep-alive.
            return WarmWindow {
                prewarm_s: None,
                keep_alive_s: ka.initial_keep_alive_s,
            };
        }
        let value = self.cold_start_value();
        let (d, load) = (self.duration_s, self.config.load_time_s);
        let bandwidth = ka.bandwidth / self.gaps.between_minutes().max(1.0).sqrt();
        let w = match prior {
            Some(prior) if ka.prior_weight > 0.0 => {
                let mut blended = self.gaps.clone();
                blended.add_scaled(&prior.gaps, ka.prior_weight);
                best_window(&blended, value, d, load, bandwidth)
            }
            _ => best_window(&self.gaps, value, d, load, bandwidth),
        };
        self.window = Some(w);
        w
    }
}

impl PoolPolicy for ForecastPool {
    fn observe(&mut self, observation: &IntervalObservation) {
        self.forecaster.observe(observation.minute);
        let index = self.minutes;
        let prior_was_in_force = self.prior_in_force();
        self.minutes += 1;
        if self.prior_in_force() != prior_was_in_force {
            self.window = None;
        }
        let n = observation.minute.invocations;
        if n <= 0.0 {
            self.gaps.open_minutes += 1.0;
            return;
        }
        self.gaps.open_minutes = 0.0;
        self.duration_s = observation.mean_duration_s;
        self.gaps.same_minute += n - 1.0;
        self.gaps.active_minutes += 1.0;
        if let Some(last) = self.last_active {
            let k = (index - last) as usize;
            match self.gaps.by_minutes.get_mut(k - 1) {
                Some(bin) => *bin += 1.0,
                None => self.gaps.beyond += 1.0,
            }
        }
        self.last_active = Some(index);
        self.window = None;
    }

    fn decide(&mut self, _now_s: f64) -> PoolDecision {
        let c = &self.config;
        let rate_per_s = self.forecaster.forecast_next() / 60.0 * c.prewarm_buffer;
        let sized = pool_for_load(
            rate_per_s,
            self.duration_s,
            c.keep_alive.cost_threshold,
            c.max_pool,
        );
        let target = sized.clamp(c.min_pool, c.max_pool);
        let window = self.warm_window();
        PoolDecision {
            pool_target: target,
            keep_alive_s: window.keep_alive_s,
            prewarm_s: window.prewarm_s,
        }
    }

    fn idle_gaps(&self) -> Option<&IdleGaps> {
        Some(&self.gaps)
    }

    fn set_fleet_prior(&mut self, prior: Arc<FleetPrior>) {
        self.prior = Some(prior);
        self.window = None;
    }

    fn forecaster(&self) -> Option<&dyn Forecaster> {
        Some(self.forecaster.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forecast::{ForecasterKind, MinuteCount, MlpModel};

    fn policy(kind: ForecasterKind) -> ForecastPool {
        let model = ModelSource::from(Arc::new(MlpModel::zeroed()));
        let config = ForecastPoolConfig {
            forecaster: kind,
            ..ForecastPoolConfig::default()
        };
        ForecastPool::new(config, &ForecastConfig::default(), &model, None)
    }

    fn observe(p: &mut ForecastPool, n: f64, duration_s: f64) {
        p.observe(&IntervalObservation {
            minute: MinuteCount {
                minute_of_day: 0,
                invocations: n,
            },
            mean_duration_s: duration_s,
            memory_mb: 128.0,
        });
    }

    #[test]
    fn pool_target_is_forecast_concurrency_times_the_buffer() {
        let mut p = policy(ForecasterKind::HoltWinters);
        for _ in 0..300 {
            observe(&mut p, 600.0, 2.0);
        }
        // 10 invocations/s × 1.5 × 2 s = 30 busy instances on average, plus headroom.
        let target = p.decide(0.0).pool_target;
        assert_eq!(target, pool_for_load(15.0, 2.0, 60.0, 256));
        assert!(target > 30, "{target}");
    }

    #[test]
    fn pool_target_is_clamped() {
        let mut p = policy(ForecasterKind::HoltWinters);
        p.config.max_pool = 4;
        for _ in 0..100 {
            observe(&mut p, 600.0, 2.0);
        }
        assert_eq!(p.decide(0.0).pool_target, 4);
    }

    #[test]
    fn the_fleet_prior_shapes_the_window_only_after_the_classic_keep_alive() {
        let mut p = policy(ForecasterKind::Histogram);
        // The fleet so far: functions called again within the minute, or never.
        let prior = FleetPrior {
            gaps: IdleGaps {
                same_minute: 1.0,
                by_minutes: vec![0.0; 240],
                beyond: 1.0,
                ..IdleGaps::default()
            },
            mean_active_minutes: 1.0,
        };
        p.set_fleet_prior(Arc::new(prior));
        observe(&mut p, 1.0, 0.5);
        for _ in 1..10 {
            assert_eq!(p.decide(0.0).keep_alive_s, 600.0, "the classic keep-alive");
            observe(&mut p, 0.0, 0.5);
        }
        let d = p.decide(0.0);
        assert!(
            d.keep_alive_s < 120.0,
            "the fleet's short idle times: {d:?}"
        );
    }

    #[test]
    fn a_timer_is_prewarmed_before_its_beat() {
        let mut p = policy(ForecasterKind::Histogram);
        for m in 0..300 {
            observe(&mut p, if m % 15 == 0 { 1.0 } else { 0.0 }, 0.5);
        }
        let d = p.decide(0.0);
        assert_eq!(
            d.pool_target, 1,
            "the beat is due in the next minute: one ready instance"
        );
        let pre = d.prewarm_s.expect("pre-warms");
        assert!(pre > 13.0 * 60.0 && pre < 15.0 * 60.0, "{d:?}");
        assert!(
            d.keep_alive_s > 15.0 * 60.0 && d.keep_alive_s <= 18.0 * 60.0,
            "{d:?}"
        );
    }
}
