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

/// A sled store without the background flusher, for tests that reopen a store in-process.
/// sled's own threads can still hold the file lock a moment after the last handle is
/// dropped, so opening waits for the lock (up to 10 s) instead of failing at once.
#[cfg(test)]
pub(crate) fn reopenable(path: &std::path::Path) -> sled::Db {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match sled::Config::new().path(path).flush_every_ms(None).open() {
            Ok(db) => return db,
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("opening {}: {e}", path.display()),
        }
    }
}
