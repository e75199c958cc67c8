//! The pool policies in the live agent: the adapter that lets a [`PoolPolicy`] — the very
//! object `synapse-agent replay` drives — plan a function's warm pool through the runtime's
//! [`Planner`] trait, fed one [`IntervalObservation`] per closed telemetry interval.
//!
//! Time: a policy counts in minutes, one observation each. The live agent feeds it one
//! telemetry interval as one of its minutes, so with the default 60-s interval the policy's
//! clock is the wall clock; with a shorter interval (tests use 1 s) the policy runs
//! `60 / interval` times faster, and every duration that crosses the boundary is scaled —
//! execution times on the way in, keep-alive and pre-warm delays on the way out — so the
//! policy decides exactly as it would over the same counts at one per minute.
//!
//! An observation is what the gateway saw in the interval: its invocations (warm, cold and
//! failed; kernel accepts are not invocations once the gateway reuses connections) and their
//! mean execution time (gateway latency minus queueing).

use std::{path::PathBuf, sync::Arc, time::Duration};

use crate::{
    config::{FunctionSpec, PolicyChoice, PolicySection},
    forecast::{
        ForecastErrorTracker, ForecasterKind, MinuteCount, MlpModel, ModelSource,
        neural::{self, onnx::OnnxError},
    },
    runtime::planner::{FixedPlan, ForecastView, Planner, PoolPlan},
    telemetry::record::FunctionInterval,
};

use super::{
    FleetPrior, IdleGaps, IntervalObservation, PolicyConfig, PolicySpec, PoolDecision, PoolPolicy,
    SpecError,
};

/// Shortest execution time fed to a policy, seconds (as in the replay).
const MIN_DURATION_S: f64 = 0.001;

/// The default neural model, built into the agent: exactly the ONNX file
/// [`neural::default_model`] writes (a test checks it), kept because pretraining takes seconds
/// in an optimised build and far longer in a debug one — too long for every agent start.
pub const BUILT_IN_MODEL: &[u8] = include_bytes!("default_forecaster.onnx");

/// Why the configured policy could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("policy.name: {0}")]
    Policy(#[from] SpecError),
    #[error("policy.model {path}: {source}")]
    ReadModel {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("policy.model {path}: {source}")]
    Model { path: PathBuf, source: OnnxError },
    #[error("the built-in neural model: {0}")]
    BuiltInModel(OnnxError),
}

/// Converts between the wall clock and the policy's minutes (see the module comment).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PolicyClock {
    interval: Duration,
}

impl PolicyClock {
    /// One telemetry interval of `interval` is one policy minute.
    pub fn new(interval: Duration) -> Self {
        Self {
            interval: interval.max(Duration::from_millis(1)),
        }
    }

    /// Policy seconds per wall second.
    fn speed(&self) -> f64 {
        60.0 / self.interval.as_secs_f64()
    }

    /// The observation a closed interval of the function gives its policy.
    pub fn observation(&self, iv: &FunctionInterval, memory_mb: f64) -> IntervalObservation {
        let invocations = iv.warm_invocations + iv.cold_invocations + iv.failed_invocations;
        let executions = iv.invocation.count;
        let mean_wall_s = if executions > 0 {
            ((iv.invocation.sum_s - iv.queue.sum_s) / executions as f64).max(MIN_DURATION_S)
        } else {
            0.0
        };
        let interval_ms = self.interval.as_millis().max(1) as i64;
        IntervalObservation {
            minute: MinuteCount {
                minute_of_day: iv.start_unix_ms.div_euclid(interval_ms).rem_euclid(1440) as u32,
                invocations: invocations as f64,
            },
            mean_duration_s: mean_wall_s * self.speed(),
            memory_mb,
        }
    }

    /// Policy seconds as wall time: NaN and negatives are 0, too large is `Duration::MAX`.
    pub fn to_wall(&self, policy_s: f64) -> Duration {
        let wall = policy_s / self.speed();
        if wall.is_nan() || wall <= 0.0 {
            return Duration::ZERO;
        }
        Duration::try_from_secs_f64(wall).unwrap_or(Duration::MAX)
    }
}

/// A pool policy planning one function's pool.
pub struct PolicyPlanner {
    policy: Box<dyn PoolPolicy>,
    clock: PolicyClock,
    /// Time an instance takes to load, policy seconds: a pre-warm must leave room for it.
    load_time_s: f64,
    /// The decision in force, made after the latest observation.
    decision: Option<PoolDecision>,
    intervals: u64,
    /// The forecaster's name, its forecast for the interval now running, and the neural
    /// model version that took part in it.
    forecast: Option<(&'static str, f64, Option<u64>)>,
    errors: ForecastErrorTracker,
    /// The neural model the forecaster reads, when it reads one.
    model: Option<ModelSource>,
}

impl PolicyPlanner {
    pub fn new(policy: Box<dyn PoolPolicy>, clock: PolicyClock, load_time_s: f64) -> Self {
        let mut planner = Self {
            policy,
            clock,
            load_time_s,
            decision: None,
            intervals: 0,
            forecast: None,
            errors: ForecastErrorTracker::default(),
            model: None,
        };
        planner.forecast = planner.forecast_next();
        planner
    }

    /// Marks the policy's forecaster as reading `model`, so every forecast names its version.
    pub fn with_model(mut self, model: ModelSource) -> Self {
        self.model = Some(model);
        self.forecast = self.forecast_next();
        self
    }

    /// The forecaster's forecast of the next interval, with the model version read now (a swap
    /// between the two reads is at most one forecast off, and the next one is right).
    fn forecast_next(&self) -> Option<(&'static str, f64, Option<u64>)> {
        let version = self.model.as_ref().map(ModelSource::version);
        self.policy
            .forecaster()
            .map(|f| (f.name(), f.forecast_next(), version))
    }

    /// The policy's decision in force, made on the first call after an observation.
    pub fn decision(&mut self) -> PoolDecision {
        if let Some(d) = self.decision {
            return d;
        }
        let d = self.policy.decide(self.intervals as f64 * 60.0);
        self.decision = Some(d);
        d
    }
}

impl Planner for PolicyPlanner {
    fn plan(&mut self, _now_s: f64) -> PoolPlan {
        let d = self.decision();
        let prewarm = d
            .prewarm_s
            .filter(|&p| d.keep_alive_s > p + self.load_time_s)
            .map(|p| self.clock.to_wall(p));
        PoolPlan {
            target: d.pool_target,
            keep_alive: self.clock.to_wall(d.keep_alive_s),
            prewarm,
        }
    }

    fn observe(&mut self, interval: &FunctionInterval, memory_mb: f64) {
        let observation = self.clock.observation(interval, memory_mb);
        if let Some((_, forecast, _)) = self.forecast {
            self.errors.record(forecast, observation.minute.invocations);
        }
        self.policy.observe(&observation);
        self.intervals += 1;
        self.decision = None;
        self.forecast = self.forecast_next();
    }

    fn forecast(&self) -> Option<ForecastView> {
        self.forecast
            .map(|(forecaster, invocations, model_version)| ForecastView {
                forecaster,
                invocations,
                accuracy: self.errors.accuracy(),
                model_version,
            })
    }

    fn idle_gaps(&self) -> Option<&IdleGaps> {
        self.policy.idle_gaps()
    }

    fn set_fleet_prior(&mut self, prior: Arc<FleetPrior>) {
        self.policy.set_fleet_prior(prior);
        self.decision = None;
    }
}

/// The configured policy, ready to plan each function's pool.
pub struct LivePolicies {
    choice: PolicyChoice,
    settings: PolicyConfig,
    model: ModelSource,
    clock: PolicyClock,
}

impl LivePolicies {
    /// Sets up `section`'s policy for telemetry intervals of `interval`. The neural model
    /// (`policy.model`, else the built-in one) is read only when the policy's forecaster uses it.
    pub fn load(section: &PolicySection, interval: Duration) -> Result<Self, LiveError> {
        let choice = section.choice()?;
        let settings = section.settings();
        let model = if uses_neural_model(&choice, &settings) {
            configured_model(section)?
        } else {
            MlpModel::zeroed()
        };
        Self::with_model(section, interval, ModelSource::Fixed(Arc::new(model)))
    }

    /// Sets up `section`'s policy with the neural model `model` (a fixed one, or the agent's
    /// model in service, which federated learning replaces).
    pub fn with_model(
        section: &PolicySection,
        interval: Duration,
        model: ModelSource,
    ) -> Result<Self, LiveError> {
        Ok(Self {
            choice: section.choice()?,
            settings: section.settings(),
            model,
            clock: PolicyClock::new(interval),
        })
    }

    /// The policy's name, for the log.
    pub fn label(&self) -> String {
        match &self.choice {
            PolicyChoice::FunctionKeepAlive => {
                "fixed-keepalive (each function's keep_alive)".into()
            }
            PolicyChoice::Named(spec) => spec.label(),
        }
    }

    /// A fresh planner for one function.
    pub fn planner(&self, spec: &FunctionSpec) -> Box<dyn Planner> {
        match &self.choice {
            PolicyChoice::FunctionKeepAlive => Box::new(FixedPlan(PoolPlan {
                target: spec.min_warm,
                keep_alive: spec.keep_alive,
                prewarm: None,
            })),
            PolicyChoice::Named(named) => {
                let planner = PolicyPlanner::new(
                    named.build(&self.settings, &self.model),
                    self.clock,
                    self.settings.forecast_pool.load_time_s,
                );
                if uses_neural_model(&self.choice, &self.settings) {
                    Box::new(planner.with_model(self.model.clone()))
                } else {
                    Box::new(planner)
                }
            }
        }
    }
}

/// The neural model `section` names: `policy.model`, else the one built into the agent.
pub fn configured_model(section: &PolicySection) -> Result<MlpModel, LiveError> {
    neural::onnx::decode(&configured_model_bytes(section)?).map_err(|source| match &section.model {
        Some(path) => LiveError::Model {
            path: path.clone(),
            source,
        },
        None => LiveError::BuiltInModel(source),
    })
}

/// The ONNX file of the neural model `section` names (see [`configured_model`]).
pub fn configured_model_bytes(section: &PolicySection) -> Result<Vec<u8>, LiveError> {
    match &section.model {
        Some(path) => std::fs::read(path).map_err(|source| LiveError::ReadModel {
            path: path.clone(),
            source,
        }),
        None => Ok(BUILT_IN_MODEL.to_vec()),
    }
}

fn uses_neural_model(choice: &PolicyChoice, settings: &PolicyConfig) -> bool {
    let PolicyChoice::Named(PolicySpec::Forecast { forecaster, .. }) = choice else {
        return false;
    };
    match forecaster.unwrap_or(settings.forecast_pool.forecaster) {
        ForecasterKind::Mlp => true,
        ForecasterKind::Hybrid => settings.forecast.hybrid.neural_weight > 0.0,
        _ => false,
    }
}

#[cfg(test)]
#[path = "live_tests.rs"]
mod tests;
