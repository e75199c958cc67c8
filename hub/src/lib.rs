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

pub mod certs;
pub mod config;
pub mod console;
pub mod link;
pub mod metrics;
pub mod placement;
pub mod registry;
