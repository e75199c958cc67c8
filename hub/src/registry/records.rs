//! What the registry keeps in sled, one JSON value per key:
//! - `agents`: agent id → [`AgentRecord`] (who it is and what it last reported);
//! - `agent_totals`: agent id → [`AgentTotals`] (accepted telemetry, the dedup watermark);
//! - `function_shares`: `FUNCTION \0 AGENT` → [`FunctionShare`] (one agent's totals of a
//!   function).
//!
//! `agent_totals` and `function_shares` change together, in one transaction per batch.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use synapse_proto::link::v1::FunctionInterval;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentRecord {
    pub id: String,
    pub tier: i32,
    pub labels: BTreeMap<String, String>,
    pub version: String,
    pub cpus: u32,
    pub memory_bytes: u64,
    pub link_version: u32,
    pub last_seen_unix_ms: i64,
    pub rtt_ms: f64,
    pub outbox_pending: u64,
    pub outbox_dropped: u64,
    pub outbox_lag_ms: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
// Records written before a field existed read it as its default.
#[serde(default)]
pub struct AgentTotals {
    pub batches: u64,
    pub invocations: u64,
    /// Highest sequence persisted. An agent sends in sequence order on its one stream and
    /// re-sends from its oldest unacknowledged batch, so any sequence at or below this one
    /// is already held.
    pub last_sequence: u64,
    /// Intervals of accepted batches that the intake refused (`registry::intake`).
    pub intervals_refused: u64,
    /// Distinct functions the agent has reported since this count was kept.
    pub functions: u64,
    /// The agent's outbox incarnation the watermark belongs to (0: not told yet).
    pub incarnation: u64,
    /// Times the agent came back with another outbox incarnation (its store was lost): each
    /// time the watermark started again, so its new batches were counted, not taken for
    /// resends.
    pub outbox_resets: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
// Records written before a field existed read it as its default.
#[serde(default)]
pub struct FunctionShare {
    pub tier: i32,
    pub invocations: u64,
    pub cold_starts: u64,
    pub instance_exits: u64,
    pub cold_start_sum_s: f64,
    pub idle_instance_s: f64,
    pub cold_start_bounds_s: Vec<f64>,
    pub cold_start_counts: Vec<u64>,
    pub last_interval_unix_ms: i64,
    /// Gateway invocations, those answered with an error and those that waited for a cold
    /// start; rollout gates compare them between hosts.
    pub gateway_invocations: u64,
    pub failed_invocations: u64,
    pub cold_invocations: u64,
    pub invocation_bounds_s: Vec<f64>,
    pub invocation_counts: Vec<u64>,
    /// Absolute errors of the agent's forecasts of gateway invocations, per interval, by the
    /// neural model version that took part in the forecast ("" for none); the forecast gate
    /// of model rollouts compares them between hosts.
    pub forecast_errors: BTreeMap<String, ForecastErrors>,
    /// Forecasts refused as not finite or negative (never counted in `forecast_errors`).
    pub forecasts_refused: u64,
}

/// Absolute forecast errors summed, and how many.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ForecastErrors {
    pub abs_error_sum: f64,
    pub forecasts: u64,
}

/// Why an interval's forecast is not counted: it is not a finite, non-negative number.
pub fn forecast_refusal(interval: &FunctionInterval) -> Option<String> {
    let forecast = interval.forecast_invocations?;
    (!forecast.is_finite() || forecast < 0.0).then(|| {
        format!(
            "forecast of {forecast} invocations for {} is not a finite non-negative number",
            interval.function
        )
    })
}

impl FunctionShare {
    /// Adds one interval. A histogram whose bounds differ from the kept ones replaces them
    /// (an agent changed its buckets); counts are only added under equal bounds.
    pub fn add(&mut self, interval: &FunctionInterval) {
        self.invocations = self.invocations.saturating_add(interval.invocations);
        self.cold_starts = self.cold_starts.saturating_add(interval.cold_starts);
        self.instance_exits = self.instance_exits.saturating_add(interval.instance_exits);
        if interval.cold_start_sum_s.is_finite() {
            self.cold_start_sum_s += interval.cold_start_sum_s;
        }
        if interval.idle_instance_s.is_finite() {
            self.idle_instance_s += interval.idle_instance_s;
        }
        self.last_interval_unix_ms = self.last_interval_unix_ms.max(interval.start_unix_ms);
        self.gateway_invocations = self
            .gateway_invocations
            .saturating_add(interval.gateway_invocations);
        self.failed_invocations = self
            .failed_invocations
            .saturating_add(interval.failed_invocations);
        self.cold_invocations = self
            .cold_invocations
            .saturating_add(interval.cold_invocations);
        if let Some(forecast) = interval.forecast_invocations {
            if forecast_refusal(interval).is_some() {
                self.forecasts_refused = self.forecasts_refused.saturating_add(1);
            } else {
                let version = interval
                    .forecast_model_version
                    .map(|v| v.to_string())
                    .unwrap_or_default();
                let errors = self.forecast_errors.entry(version).or_default();
                errors.abs_error_sum += (forecast - interval.gateway_invocations as f64).abs();
                errors.forecasts += 1;
            }
        }
        add_histogram(
            &mut self.invocation_bounds_s,
            &mut self.invocation_counts,
            &interval.invocation_bounds_s,
            &interval.invocation_counts,
        );
        let bounds = &interval.cold_start_bounds_s;
        let counts = &interval.cold_start_counts;
        if bounds.is_empty() || bounds.len() != counts.len() {
            return;
        }
        if self.cold_start_bounds_s != *bounds {
            self.cold_start_bounds_s = bounds.clone();
            self.cold_start_counts = vec![0; bounds.len()];
        }
        for (kept, added) in self.cold_start_counts.iter_mut().zip(counts) {
            *kept = kept.saturating_add(*added);
        }
    }
}

/// Adds a histogram under equal bounds; other bounds replace the kept ones.
fn add_histogram(bounds: &mut Vec<f64>, counts: &mut Vec<u64>, new_bounds: &[f64], new: &[u64]) {
    if new_bounds.is_empty() || new_bounds.len() != new.len() {
        return;
    }
    if bounds != new_bounds {
        *bounds = new_bounds.to_vec();
        *counts = vec![0; new_bounds.len()];
    }
    for (kept, added) in counts.iter_mut().zip(new) {
        *kept = kept.saturating_add(*added);
    }
}

/// Key of one agent's share of a function.
pub fn share_key(function: &str, agent: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(function.len() + agent.len() + 1);
    key.extend_from_slice(function.as_bytes());
    key.push(0);
    key.extend_from_slice(agent.as_bytes());
    key
}

/// Splits a share key into function and agent.
pub fn split_share_key(key: &[u8]) -> Option<(String, String)> {
    let at = key.iter().position(|b| *b == 0)?;
    let function = std::str::from_utf8(&key[..at]).ok()?;
    let agent = std::str::from_utf8(&key[at + 1..]).ok()?;
    Some((function.to_owned(), agent.to_owned()))
}
