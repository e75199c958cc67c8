//! What the agent records per function and per interval, and the host sample beside it.

use serde::{Deserialize, Serialize};

use super::histogram::LatencyHistogram;

/// Telemetry of one function over one interval.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FunctionInterval {
    pub function: String,
    /// Start of the interval, Unix time in milliseconds.
    pub start_unix_ms: i64,
    pub interval_ms: u64,
    /// Connections accepted by the function's instances (one per invocation).
    pub invocations: u64,
    /// Instances that executed (exec seen in their cgroup).
    pub instance_starts: u64,
    /// Instances that became ready (first `listen()`), each one cold start.
    pub cold_starts: u64,
    /// exec → first `listen()`.
    pub cold_start: LatencyHistogram,
    /// exec → first `accept()`.
    pub first_request: LatencyHistogram,
    pub instance_exits: u64,
    /// Lifetimes (exec → exit) of the instances that exited in the interval.
    pub lifetime: LatencyHistogram,
    /// Instance-seconds during which a ready instance accepted no connection.
    pub idle_instance_s: f64,
    /// Instances alive at the end of the interval.
    pub instances: u64,
    /// Invocations through the gateway served by a ready instance.
    #[serde(default)]
    pub warm_invocations: u64,
    /// Invocations through the gateway that waited for an instance to start.
    #[serde(default)]
    pub cold_invocations: u64,
    /// Invocations through the gateway answered with an error.
    #[serde(default)]
    pub failed_invocations: u64,
    /// Gateway latency of invocations, queueing included.
    #[serde(default)]
    pub invocation: LatencyHistogram,
    /// Time invocations waited for an instance.
    #[serde(default)]
    pub queue: LatencyHistogram,
    /// Gateway invocations the function's planner forecast for this interval (made when the
    /// previous one closed); none without a forecasting planner.
    #[serde(default)]
    pub forecast_invocations: Option<f64>,
    /// The neural model version that took part in that forecast (0: the agent's own model).
    #[serde(default)]
    pub forecast_model_version: Option<u64>,
}

impl FunctionInterval {
    /// Folds a later interval of the same function into this one (for roll-ups).
    pub fn absorb(&mut self, other: &Self) {
        self.interval_ms += other.interval_ms;
        self.invocations += other.invocations;
        self.instance_starts += other.instance_starts;
        self.cold_starts += other.cold_starts;
        self.cold_start.merge(&other.cold_start);
        self.first_request.merge(&other.first_request);
        self.instance_exits += other.instance_exits;
        self.lifetime.merge(&other.lifetime);
        self.idle_instance_s += other.idle_instance_s;
        self.instances = other.instances;
        self.warm_invocations += other.warm_invocations;
        self.cold_invocations += other.cold_invocations;
        self.failed_invocations += other.failed_invocations;
        self.invocation.merge(&other.invocation);
        self.queue.merge(&other.queue);
        // A roll-up's forecast is the sum of its intervals' forecasts, when all had one.
        self.forecast_invocations = self
            .forecast_invocations
            .zip(other.forecast_invocations)
            .map(|(a, b)| a + b);
        if self.forecast_model_version != other.forecast_model_version {
            self.forecast_model_version = None;
        }
    }
}

impl FunctionInterval {
    /// The interval as it travels to the hub.
    pub fn to_wire(&self) -> crate::link::FunctionInterval {
        crate::link::FunctionInterval {
            function: self.function.clone(),
            start_unix_ms: self.start_unix_ms,
            interval_ms: u32::try_from(self.interval_ms).unwrap_or(u32::MAX),
            invocations: self.invocations,
            cold_starts: self.cold_starts,
            instance_exits: self.instance_exits,
            // One bound per count, the open last bucket bounded by f64::MAX as below.
            cold_start_bounds_s: super::histogram::LATENCY_BOUNDS_S
                .iter()
                .copied()
                .chain(std::iter::once(f64::MAX))
                .collect(),
            cold_start_counts: self.cold_start.counts.clone(),
            cold_start_sum_s: self.cold_start.sum_s,
            idle_instance_s: self.idle_instance_s,
            gateway_invocations: self.warm_invocations
                + self.cold_invocations
                + self.failed_invocations,
            failed_invocations: self.failed_invocations,
            cold_invocations: self.cold_invocations,
            // One bound per count: the open last bucket is bounded by f64::MAX (JSON and
            // protobuf both carry it, unlike infinity).
            invocation_bounds_s: super::histogram::LATENCY_BOUNDS_S
                .iter()
                .copied()
                .chain(std::iter::once(f64::MAX))
                .collect(),
            invocation_counts: self.invocation.counts.clone(),
            forecast_invocations: self.forecast_invocations,
            forecast_model_version: self.forecast_model_version,
        }
    }
}

/// Host resources at the end of an interval, read with sysinfo.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HostSample {
    pub unix_ms: i64,
    pub cpus: u32,
    /// Busy share of all CPUs, 0..=1.
    pub cpu_usage: f64,
    pub memory_total_bytes: u64,
    pub memory_used_bytes: u64,
    pub load1: f64,
}

#[cfg(test)]
mod tests {
    use super::super::tracker::Tracker;
    use crate::runtime::InvocationRecord;

    #[test]
    fn gateway_failures_cold_starts_and_latency_travel_to_the_hub() {
        let mut t = Tracker::default();
        t.add_function(0, "f");
        for (cold, ok, latency_s) in [
            (true, true, 0.2),
            (false, true, 0.001),
            (false, false, 0.002),
        ] {
            t.on_invocation(&InvocationRecord {
                function_id: 0,
                cold,
                queue_s: 0.0,
                latency_s,
                ok,
            });
        }
        let wire = t.close_interval(0, 1000)[0].to_wire();
        assert_eq!(
            (
                wire.gateway_invocations,
                wire.failed_invocations,
                wire.cold_invocations
            ),
            (3, 1, 1)
        );
        assert_eq!(wire.invocation_bounds_s.len(), wire.invocation_counts.len());
        assert_eq!(wire.invocation_counts.iter().sum::<u64>(), 3);
    }
}
