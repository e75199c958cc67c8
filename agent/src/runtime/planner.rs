//! What the pool manager asks each tick: how many instances to hold and how long an idle one
//! stays warm. The fixed plan is the function's own bounds (`min_warm`, `keep_alive`); the
//! forecast-driven policies plug in through the same trait.

use std::time::Duration;

/// The pool's plan until the next tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolPlan {
    /// Instances (starting or ready) to hold at least.
    pub target: u32,
    pub keep_alive: Duration,
}

/// Decides a function's pool plan; `now_s` is seconds on the agent's clock.
pub trait Planner: Send {
    fn plan(&mut self, now_s: f64) -> PoolPlan;
    /// One minute of the function's measured demand, for planners that learn.
    fn observe_minute(&mut self, _invocations: u64, _mean_duration_s: f64, _memory_mb: f64) {}
}

/// A fixed keep-alive and the configured minimum of warm instances.
pub struct FixedPlan(pub PoolPlan);

impl Planner for FixedPlan {
    fn plan(&mut self, _now_s: f64) -> PoolPlan {
        self.0
    }
}
