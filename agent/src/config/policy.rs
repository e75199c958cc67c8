//! `[policy]`: the warm-pool policy the live agent runs for every function, with the very
//! settings `synapse-agent replay --config` reads (`docs/replay.md`), under `[policy.…]`.
//! Every default is stated next to its field, here and in the policy modules.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::{
    forecast::ForecastConfig,
    policy::{ForecastPoolConfig, HybridHistogramConfig, PolicyConfig, PolicySpec},
};

/// The policy and its settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicySection {
    /// `forecast` (ours; default), with optional overrides
    /// `forecast(cost_threshold=C,forecaster=F,prewarm_buffer=B)`; `fixed-keepalive` (each
    /// function's own `keep_alive`), `fixed-keepalive(TTL)` or `hybrid-histogram`.
    pub name: String,
    /// ONNX file of the neural forecaster. Default: none, the model pretrained into the agent.
    pub model: Option<PathBuf>,
    /// Our policy's settings.
    pub forecast_pool: ForecastPoolConfig,
    /// The `hybrid-histogram` baseline's settings.
    pub hybrid_histogram: HybridHistogramConfig,
    /// The forecasters' settings.
    pub forecast: ForecastConfig,
}

impl Default for PolicySection {
    fn default() -> Self {
        Self {
            name: "forecast".into(),
            model: None,
            forecast_pool: ForecastPoolConfig::default(),
            hybrid_histogram: HybridHistogramConfig::default(),
            forecast: ForecastConfig::default(),
        }
    }
}

/// Which policy each function gets.
#[derive(Debug, Clone, PartialEq)]
pub enum PolicyChoice {
    /// `fixed-keepalive` without a TTL: each function's own `keep_alive` and `min_warm`.
    FunctionKeepAlive,
    /// A policy named as in the replay.
    Named(PolicySpec),
}

impl PolicySection {
    /// The policy `name` stands for.
    pub fn choice(&self) -> Result<PolicyChoice, crate::policy::SpecError> {
        if self.name.trim() == "fixed-keepalive" {
            return Ok(PolicyChoice::FunctionKeepAlive);
        }
        PolicySpec::parse(&self.name).map(PolicyChoice::Named)
    }

    /// The settings in the replay's form.
    pub fn settings(&self) -> PolicyConfig {
        PolicyConfig {
            forecast_pool: self.forecast_pool.clone(),
            hybrid_histogram: self.hybrid_histogram.clone(),
            forecast: self.forecast.clone(),
        }
    }

    /// Refuses a policy name that is not known and settings no policy can work with; returns
    /// the field and the reason.
    pub(super) fn validate(&self) -> Result<(), (String, String)> {
        self.choice()
            .map_err(|e| ("policy.name".to_string(), e.to_string()))?;
        if let Some(field) = first_non_finite(&self.settings()) {
            return Err((format!("policy.{field}"), "must be a finite number".into()));
        }
        let f = &self.forecast_pool;
        let k = &f.keep_alive;
        let h = &self.hybrid_histogram;
        let checks: [(&str, bool, &str); 9] = [
            (
                "forecast_pool.prewarm_buffer",
                f.prewarm_buffer > 0.0,
                "must be above 0",
            ),
            (
                "forecast_pool.max_pool",
                f.min_pool <= f.max_pool,
                "must be at least min_pool",
            ),
            (
                "forecast_pool.load_time_s",
                f.load_time_s >= 0.0,
                "must not be negative",
            ),
            (
                "forecast_pool.keep_alive.cost_threshold",
                k.cost_threshold >= 0.0,
                "must not be negative",
            ),
            (
                "forecast_pool.keep_alive.prior_weight",
                k.prior_weight >= 0.0,
                "must not be negative",
            ),
            (
                "forecast_pool.keep_alive.bandwidth",
                k.bandwidth >= 0.0,
                "must not be negative",
            ),
            (
                "forecast_pool.keep_alive.initial_keep_alive_s",
                k.initial_keep_alive_s >= 0.0,
                "must not be negative",
            ),
            (
                "hybrid_histogram.tail_percentile",
                (0.0..=100.0).contains(&h.head_percentile)
                    && (0.0..=100.0).contains(&h.tail_percentile)
                    && h.head_percentile <= h.tail_percentile,
                "head_percentile and tail_percentile must lie in 0..=100, head first",
            ),
            (
                "hybrid_histogram.fallback_keep_alive_s",
                h.fallback_keep_alive_s >= 0.0,
                "must not be negative",
            ),
        ];
        for (field, ok, reason) in checks {
            if !ok {
                return Err((format!("policy.{field}"), reason.into()));
            }
        }
        let ranges = [
            ("forecast_pool.keep_alive.range_minutes", k.range_minutes),
            ("hybrid_histogram.range_minutes", h.range_minutes),
            (
                "forecast.histogram.range_minutes",
                self.forecast.histogram.range_minutes,
            ),
            (
                "forecast.holt_winters.season_minutes",
                self.forecast.holt_winters.season_minutes,
            ),
        ];
        for (field, v) in ranges {
            if v == 0 {
                return Err((format!("policy.{field}"), "must be at least 1".into()));
            }
        }
        Ok(())
    }
}

/// The dotted path of the first NaN or infinite number in `settings` (TOML can write both).
fn first_non_finite(settings: &PolicyConfig) -> Option<String> {
    fn walk(value: &toml::Value, path: &str) -> Option<String> {
        match value {
            toml::Value::Float(f) if !f.is_finite() => Some(path.to_string()),
            toml::Value::Table(t) => t.iter().find_map(|(k, v)| {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                walk(v, &p)
            }),
            _ => None,
        }
    }
    walk(&toml::Value::try_from(settings).ok()?, "")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AgentConfig;

    fn parse(text: &str) -> Result<PolicySection, String> {
        AgentConfig::parse(text, "a.toml")
            .map(|c| c.policy)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn without_a_policy_section_the_agent_runs_ours_with_the_documented_defaults() {
        let p = parse("").unwrap();
        assert_eq!(p, PolicySection::default());
        assert_eq!(
            p.choice().unwrap(),
            PolicyChoice::Named(PolicySpec::Forecast {
                cost_threshold: None,
                forecaster: None,
                prewarm_buffer: None
            })
        );
        assert_eq!(p.settings(), PolicyConfig::default());
    }

    #[test]
    fn the_baselines_and_the_functions_own_keep_alive_are_selectable() {
        let p = parse("[policy]\nname = \"hybrid-histogram\"\n").unwrap();
        assert_eq!(
            p.choice().unwrap(),
            PolicyChoice::Named(PolicySpec::HybridHistogram)
        );
        let p = parse("[policy]\nname = \"fixed-keepalive(10m)\"\n").unwrap();
        assert_eq!(
            p.choice().unwrap(),
            PolicyChoice::Named(PolicySpec::FixedKeepAlive { ttl_s: 600.0 })
        );
        let p = parse("[policy]\nname = \"fixed-keepalive\"\n").unwrap();
        assert_eq!(p.choice().unwrap(), PolicyChoice::FunctionKeepAlive);
    }

    #[test]
    fn knobs_are_read_from_the_replays_keys() {
        let p = parse(
            "[policy]\nname = \"forecast(forecaster=arima)\"\n\
             [policy.forecast_pool.keep_alive]\ncost_threshold = 120\n\
             [policy.forecast.holt_winters]\nseason_minutes = 10\n",
        )
        .unwrap();
        assert_eq!(p.forecast_pool.keep_alive.cost_threshold, 120.0);
        assert_eq!(p.forecast.holt_winters.season_minutes, 10);
    }

    #[test]
    fn an_unknown_policy_or_key_is_refused_with_the_reason() {
        let err = parse("[policy]\nname = \"lru\"\n").unwrap_err();
        assert!(err.contains("policy.name: unknown policy `lru`"), "{err}");
        let err = parse("[policy.forecast_pool]\nprewarm_bufer = 2\n").unwrap_err();
        assert!(
            err.contains("a.toml:2:1") && err.contains("prewarm_bufer"),
            "{err}"
        );
    }

    #[test]
    fn non_finite_and_out_of_range_knobs_are_refused() {
        let err = parse("[policy.forecast_pool.keep_alive]\ncost_threshold = nan\n").unwrap_err();
        assert!(
            err.contains("policy.forecast_pool.keep_alive.cost_threshold: must be a finite number"),
            "{err}"
        );
        let err = parse("[policy.forecast_pool]\nprewarm_buffer = 0\n").unwrap_err();
        assert!(
            err.contains("policy.forecast_pool.prewarm_buffer: must be above 0"),
            "{err}"
        );
        let err = parse("[policy.forecast_pool]\nmin_pool = 5\nmax_pool = 2\n").unwrap_err();
        assert!(err.contains("must be at least min_pool"), "{err}");
    }
}
