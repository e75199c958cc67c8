//! Warm-pool policies: per function, how many ready instances to keep and how long an idle
//! instance stays warm (keep-alive) or when a released one is loaded again (pre-warm).
//!
//! A [`PoolPolicy`] is plain synchronous code: it is fed one completed interval of a function's
//! observations at a time and asked for a [`PoolDecision`] at a given time. The live agent
//! drives it with the wall clock and what eBPF measured; the replay drives the same code with
//! a virtual clock over a trace.

mod config;
mod fixed;
mod fleet;
mod forecast_pool;
mod hybrid_histogram;
mod keep_alive;
pub mod live;
mod pool_size;
mod spec;

pub use config::{ForecastPoolConfig, HybridHistogramConfig, KeepAliveConfig, PolicyConfig};
pub use fixed::FixedKeepAlive;
pub use fleet::{FleetPriorBuilder, PRIOR_REFRESH_INTERVALS};
pub use forecast_pool::ForecastPool;
pub use hybrid_histogram::HybridHistogram;
pub use keep_alive::{FleetPrior, IdleGaps, WarmWindow, best_window};
pub use pool_size::pool_for_load;
pub use spec::{PolicySpec, SpecError};

use std::sync::Arc;

use crate::forecast::{Forecaster, MinuteCount};

/// What was measured for one function over one completed interval (a minute).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IntervalObservation {
    /// The interval's invocation count and its minute of the day.
    pub minute: MinuteCount,
    /// Mean execution time of the function's invocations, seconds.
    pub mean_duration_s: f64,
    /// Memory of one instance, MB.
    pub memory_mb: f64,
}

/// What a policy wants for one function until its next decision.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PoolDecision {
    /// Instances to keep alive at least (ready, loading or busy); more are started when fewer
    /// exist, and idle ones are not retired below it.
    pub pool_target: u32,
    /// How long after the end of its execution an instance stays warm, seconds.
    pub keep_alive_s: f64,
    /// When set, an instance is released as soon as its execution ends and a new one starts
    /// loading this many seconds later (unless an invocation came first); it then stays warm
    /// until `keep_alive_s` after that end.
    pub prewarm_s: Option<f64>,
}

/// A warm-pool policy for one function.
pub trait PoolPolicy: Send {
    /// Feeds one completed interval.
    fn observe(&mut self, observation: &IntervalObservation);
    /// The decision in force from `now_s` (seconds on the driver's clock) until the next one.
    fn decide(&mut self, now_s: f64) -> PoolDecision;
    /// This function's idle times, if the policy learns them (they feed the fleet prior).
    fn idle_gaps(&self) -> Option<&IdleGaps> {
        None
    }
    /// Idle times of the whole fleet, for policies that blend them into their own.
    fn set_fleet_prior(&mut self, _prior: Arc<FleetPrior>) {}
    /// The demand forecaster the policy sizes its pool by, if it has one (the live agent
    /// exports its forecast and error).
    fn forecaster(&self) -> Option<&dyn Forecaster> {
        None
    }
}
