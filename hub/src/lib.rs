//! The SynapseStream hub as a library: the `synapse-hub` daemon, `synapsectl` and the
//! integration tests and benches drive these modules.
//!
//! - [`config`]: the hub's TOML configuration.
//! - [`certs`]: the fleet CA and certificate issuing (`synapsectl certs`).
//! - [`registry`]: agents and per-function statistics in sled, exactly-once batch accounting.
//! - [`link`]: the QUIC server agents connect to.
//! - [`console`]: the operators' gRPC console.
//! - [`placement`]: cross-tier placement of warm pools.
//! - [`metrics`]: Prometheus metrics `synapse_hub_*`.
//! - [`rollout`]: fleet rollouts of function versions, models and agent settings in gated steps.
//! - [`federation`]: federated-learning rounds, robust aggregation, the optimizer step.
//! - [`models`]: the registry of the neural forecaster's versions.

pub mod certs;
pub mod config;
pub mod console;
pub mod federation;
pub mod link;
pub mod metrics;
pub mod models;
pub mod placement;
pub mod registry;
pub mod rollout;
