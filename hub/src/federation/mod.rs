//! Federated learning on the hub: rounds in which agents send the gradient of the neural
//! forecaster's loss on their own recent data, robust aggregation, the optimizer step, and the
//! distribution of the new version.
//!
//! - [`config`]: the `[federation]` section.
//! - [`intake`]: the checks a gradient passes (pure).
//! - [`aggregate`], [`privacy`], [`optimizer`], [`update`]: the update (pure).
//! - [`rounds`]: round records and gradients in sled.
//! - [`coordinator`]: the round state machine, the link handler and the model distribution.
//! - [`rollout`]: which agents receive a version.
//! - [`console`]: the `Learning` gRPC service (`synapsectl models`, `synapsectl rounds`).

pub mod aggregate;
pub mod config;
pub mod console;
pub mod coordinator;
#[cfg(test)]
mod coordinator_tests;
pub mod intake;
pub mod optimizer;
pub mod privacy;
pub mod rollout;
pub mod rounds;
pub mod update;

pub use config::FederationConfig;
pub use coordinator::{Federation, FederationError};
