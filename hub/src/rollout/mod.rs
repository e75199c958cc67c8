//! Fleet rollouts: a new function version, forecaster version or agent settings taken to a
//! selection of hosts in steps, each step baked and judged by gates that compare the updated
//! hosts with those not yet updated; a failed gate rolls the updated hosts back by itself.
//!
//! Rooms: [`spec`] (targets, steps, selector, wave order), [`state`] (the record and its
//! state machine), [`gates`], [`payload`] (what a rollout may carry), [`store`] (sled),
//! [`engine`] (the tick, agents' desired versions), `judge` (a step's windows), `models` (the hook of federated learning), [`handler`] (the link), [`service`]
//! (the console's `Rollouts` service).

pub mod engine;
pub mod gates;
mod handler;
mod judge;
mod models;
pub mod payload;
pub mod service;
pub mod spec;
pub mod state;
pub mod store;
#[cfg(test)]
mod tests;

pub use engine::{Operation, RolloutEngine, StartRequest};
pub use spec::{SpecError, Target, parse_steps};
pub use state::{Desired, Rollout, State, TransitionError};
pub use store::StoreError;

use crate::registry::RegistryError;

/// Why a rollout operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Transition(#[from] TransitionError),
    #[error("no rollout {0:?} (neither an id nor a target with an active rollout)")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
}
