//! What the pool manager asks each tick: how many instances to hold, how long an idle one
//! stays warm, and whether a released one is loaded again later (pre-warm). The fixed plan is
//! the function's own bounds (`min_warm`, `keep_alive`); the pool policies of `crate::policy`
//! plug in through the same trait (`crate::policy::live::PolicyPlanner`), fed one observation
//! per closed telemetry interval.

use std::{sync::Arc, time::Duration};

use crate::{
    policy::{FleetPrior, IdleGaps},
    telemetry::record::FunctionInterval,
};

/// The pool's plan until the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolPlan {
    /// Instances (starting or ready) to hold at least.
    pub target: u32,
    /// Idle time, counted from the end of an instance's last invocation, after which an
    /// instance beyond the target is retired.
    pub keep_alive: Duration,
    /// When set, an instance beyond the target is released as soon as its invocation ends and
    /// a new one starts this long after that end (unless an invocation came first); the new
    /// one stays warm until `keep_alive` after the end.
    pub prewarm: Option<Duration>,
}

/// What a forecasting planner expects of the next interval, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ForecastView {
    /// Short name of the forecaster (`hybrid`, `arima`, …).
    pub forecaster: &'static str,
    /// Invocations expected in the next interval.
    pub invocations: f64,
    pub accuracy: crate::forecast::ForecastAccuracy,
    /// The neural model version that took part in the forecast (0: the agent's own model);
    /// none when no neural model did.
    pub model_version: Option<u64>,
}

/// Decides a function's pool plan; `now_s` is seconds on the agent's clock.
pub trait Planner: Send {
    fn plan(&mut self, now_s: f64) -> PoolPlan;
    /// One closed telemetry interval of the function (whose instances hold `memory_mb` each),
    /// for planners that learn.
    fn observe(&mut self, _interval: &FunctionInterval, _memory_mb: f64) {}
    /// The planner's forecast of the next interval and its error so far, if it forecasts.
    fn forecast(&self) -> Option<ForecastView> {
        None
    }
    /// This function's idle times, if the planner learns them (they feed the fleet prior).
    fn idle_gaps(&self) -> Option<&IdleGaps> {
        None
    }
    /// Idle times of every function of this agent, for planners that blend them in.
    fn set_fleet_prior(&mut self, _prior: Arc<FleetPrior>) {}
}

/// A fixed keep-alive and the configured minimum of warm instances.
pub struct FixedPlan(pub PoolPlan);

impl Planner for FixedPlan {
    fn plan(&mut self, _now_s: f64) -> PoolPlan {
        self.0
    }
}
