//! The demand report: per function, the rate of invocations that arrived from users (counted
//! by the gateway, forwarded ones included, forwarded-in ones not) smoothed into a forecast,
//! the mean execution time and cold-start latency from the stored intervals (gateway records
//! and eBPF), the instance memory; and the memory this host gives to warm pools.

use std::{collections::HashMap, time::Instant};

use synapse_proto::link::v1::{DemandReport, FunctionDemand};

use crate::{
    gateway::remote::Remote,
    runtime::{DEFAULT_ACCOUNTED_MB, Runtime, pool::SlotState},
    store::Store,
    telemetry::{histogram::LatencyHistogram, host::HostProbe},
};

/// Weight of the newest interval's rate in the forecast (exponential smoothing).
const SMOOTHING: f64 = 0.5;
/// Intervals looked at for execution time and cold starts, ms.
const WINDOW_MS: i64 = 10 * 60 * 1000;
const MB: u64 = 1_000_000;

struct Seen {
    arrivals: u64,
    forecast: f64,
}

pub struct Reporter {
    seen: HashMap<String, Seen>,
    last: Instant,
    host: HostProbe,
    declared_mb: Option<u64>,
}

fn mean(h: &LatencyHistogram) -> f64 {
    h.mean_s().filter(|m| m.is_finite()).unwrap_or(0.0)
}

impl Reporter {
    pub fn new(runtime: &Runtime, declared_mb: Option<u64>) -> Self {
        let seen = runtime
            .functions()
            .map(|f| {
                (
                    f.spec.name.clone(),
                    Seen {
                        arrivals: 0,
                        forecast: 0.0,
                    },
                )
            })
            .collect();
        Self {
            seen,
            last: Instant::now(),
            host: HostProbe::new(),
            declared_mb,
        }
    }

    pub fn report(&mut self, runtime: &Runtime, remote: &Remote, store: &Store) -> DemandReport {
        let now = Instant::now();
        let elapsed = now.duration_since(self.last).as_secs_f64().max(1e-3);
        self.last = now;
        let unix_ms = crate::telemetry::unix_ms();
        let mut functions = Vec::new();
        let mut pooled_bytes = 0u64;
        for f in runtime.functions() {
            let name = &f.spec.name;
            let arrivals = remote.arrivals(name);
            let seen = self.seen.entry(name.clone()).or_insert(Seen {
                arrivals,
                forecast: 0.0,
            });
            let rate = arrivals.saturating_sub(seen.arrivals) as f64 / elapsed;
            seen.arrivals = arrivals;
            seen.forecast = SMOOTHING * rate + (1.0 - SMOOTHING) * seen.forecast;
            let (mut invocation, mut queue, mut cold) = Default::default();
            match store.intervals(name, unix_ms - WINDOW_MS, false) {
                Ok(intervals) => {
                    for iv in &intervals {
                        LatencyHistogram::merge(&mut invocation, &iv.invocation);
                        LatencyHistogram::merge(&mut queue, &iv.queue);
                        LatencyHistogram::merge(&mut cold, &iv.cold_start);
                    }
                }
                Err(e) => {
                    tracing::warn!(function = %name, "reading intervals for placement: {e:#}")
                }
            }
            let memory_bytes = f.spec.memory_mb.unwrap_or(DEFAULT_ACCOUNTED_MB) * MB;
            let warm = f
                .snapshot()
                .iter()
                .filter(|(_, state, _, _)| *state == SlotState::Ready)
                .count() as u32;
            pooled_bytes += u64::from(warm) * memory_bytes;
            functions.push(FunctionDemand {
                function: name.clone(),
                forecast_per_s: seen.forecast,
                // The gateway's latency less its queueing: the instance's own time.
                execution_s: (mean(&invocation) - mean(&queue)).max(0.0),
                memory_bytes,
                cold_start_s: mean(&cold),
                warm_instances: warm,
            });
        }
        let sample = self.host.sample(unix_ms);
        let pool_memory_bytes = match self.declared_mb {
            Some(mb) => mb * MB,
            None => {
                sample
                    .memory_total_bytes
                    .saturating_sub(sample.memory_used_bytes)
                    + pooled_bytes
            }
        };
        DemandReport {
            unix_ms,
            functions,
            pool_memory_bytes,
            cpu_load: sample.cpu_usage.clamp(0.0, 1.0),
        }
    }
}
