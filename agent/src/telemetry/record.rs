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
