//! Settings of the pool policies, with their defaults written in the code and in
//! `docs/replay.md`. Unknown keys are refused.

use serde::{Deserialize, Serialize};

use crate::forecast::{ForecastConfig, ForecasterKind};

/// Settings of every policy and of the forecasters ours uses.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// Our policy, `forecast`.
    pub forecast_pool: ForecastPoolConfig,
    /// The baseline `hybrid-histogram`.
    pub hybrid_histogram: HybridHistogramConfig,
    /// The forecasters.
    pub forecast: ForecastConfig,
}

/// Our policy: pool target from the demand forecast, keep-alive from the cost of a cold start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ForecastPoolConfig {
    /// Forecaster of the next minute's demand. Default `hybrid`.
    pub forecaster: ForecasterKind,
    /// Headroom on the forecast rate: the expected concurrency sized into a pool is
    /// forecast rate × this × mean duration. Default 1.5.
    pub prewarm_buffer: f64,
    /// Lowest pool target. Default 0.
    pub min_pool: u32,
    /// Highest pool target. Default 256.
    pub max_pool: u32,
    /// Time an instance takes to load, seconds (pre-warms start this early). Default 1.
    pub load_time_s: f64,
    /// Keep-alive settings.
    pub keep_alive: KeepAliveConfig,
}

impl Default for ForecastPoolConfig {
    fn default() -> Self {
        Self {
            forecaster: ForecasterKind::Hybrid,
            prewarm_buffer: 1.5,
            min_pool: 0,
            max_pool: 256,
            load_time_s: 1.0,
            keep_alive: KeepAliveConfig::default(),
        }
    }
}

/// How long an idle instance stays warm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeepAliveConfig {
    /// The knob: idle instance-seconds that one avoided cold start is worth. Higher keeps
    /// instances longer (more memory, fewer cold starts). Default 60.
    pub cost_threshold: f64,
    /// Weight, in pseudo-observations, of the fleet's idle times blended into a function's own
    /// (helps functions with little history). Default 1.
    pub prior_weight: f64,
    /// Range of the idle-time histogram, minutes. Default 240.
    pub range_minutes: usize,
    /// Value a function's cold start at `cost_threshold × (1 + a / a_f)`, where `a_f` is the
    /// function's active minutes so far and `a` the fleet's mean: a cold start is a larger
    /// share of a rarely called function's calls (its app cold-start %). Default true.
    pub rarity_weighting: bool,
    /// Relative half width of the spread given to an idle time seen once; it narrows as
    /// `1/√n` with `n` idle times seen. Default 0.5.
    pub bandwidth: f64,
    /// Keep-alive while neither the function nor the fleet has shown any idle time yet,
    /// seconds: the classic fixed keep-alive. The fleet prior is used only once the policy
    /// has watched this long. Default 600.
    pub initial_keep_alive_s: f64,
}

impl Default for KeepAliveConfig {
    fn default() -> Self {
        Self {
            cost_threshold: 60.0,
            prior_weight: 1.0,
            range_minutes: 240,
            rarity_weighting: true,
            bandwidth: 0.5,
            initial_keep_alive_s: 600.0,
        }
    }
}

/// The hybrid histogram policy of "Serverless in the Wild" (USENIX ATC 2020).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HybridHistogramConfig {
    /// Histogram range, minutes (1-minute bins). Default 240.
    pub range_minutes: usize,
    /// Pre-warm at this percentile of idle times. Default 5.
    pub head_percentile: f64,
    /// Keep alive until this percentile. Default 99.
    pub tail_percentile: f64,
    /// Safety margin taken off the head and added to the tail. Default 0.1.
    pub margin: f64,
    /// Bin-count coefficient of variation below which the histogram is not representative.
    /// Default 2.
    pub cv_threshold: f64,
    /// Idle times needed before the histogram is trusted. Default 5.
    pub min_samples: u32,
    /// Share of idle times beyond the range above which the next one is forecast by ARIMA.
    /// Default 0.5.
    pub out_of_bounds_threshold: f64,
    /// Keep-alive while the histogram is not representative, seconds. Default 14400 (the range,
    /// as published).
    pub fallback_keep_alive_s: f64,
}

impl Default for HybridHistogramConfig {
    fn default() -> Self {
        Self {
            range_minutes: 240,
            head_percentile: 5.0,
            tail_percentile: 99.0,
            margin: 0.1,
            cv_threshold: 2.0,
            min_samples: 5,
            out_of_bounds_threshold: 0.5,
            fallback_keep_alive_s: 14_400.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_gives_the_documented_defaults() {
        let c: PolicyConfig = toml::from_str("").expect("parses");
        assert_eq!(c, PolicyConfig::default());
        assert_eq!(c.forecast_pool.keep_alive.cost_threshold, 60.0);
    }

    #[test]
    fn the_knob_is_set_by_its_documented_key() {
        let c: PolicyConfig =
            toml::from_str("[forecast_pool.keep_alive]\ncost_threshold = 120\n").expect("parses");
        assert_eq!(c.forecast_pool.keep_alive.cost_threshold, 120.0);
    }

    #[test]
    fn unknown_keys_are_refused_with_their_line() {
        let err = toml::from_str::<PolicyConfig>("[forecast_pool]\nprewarm_bufer = 2\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("prewarm_bufer") && err.contains("line 2"),
            "{err}"
        );
    }
}
