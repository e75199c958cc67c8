//! The agent's link to its hub. The protocol, the durable outbox and the client live in the
//! `synapse-link` crate, shared with the hub and its tests; this module is the agent's entry
//! point to them.
//!
//! The agent runs [`run`] (or [`run_reporting`] to observe [`LinkStatus`]) on its own task
//! with its sled database, and hands each telemetry interval set to it through a bounded
//! channel; each message becomes one durable batch, sent when the hub is reachable:
//!
//! ```ignore
//! let (batches, rx) = tokio::sync::mpsc::channel(1024);
//! let identity = link::AgentIdentity {
//!     id: "edge-1".into(),
//!     tier: link::Tier::Edge,
//!     labels: Default::default(),
//!     version: env!("CARGO_PKG_VERSION").into(),
//!     capacity: link::host_capacity(),
//!     gateway: config.gateway.listen.to_string(),
//! };
//! tokio::spawn(link::run(config.link.clone(), identity, db.clone(), rx, shutdown.clone()));
//! // On every telemetry tick; `try_send` so that serving never waits on the link:
//! let _ = batches.try_send(intervals);
//! ```

pub use synapse_link::{
    client::{
        AgentIdentity, ControlChannels, LinkConfig, LinkError, LinkStatus, host_capacity, run,
        run_reporting, run_with_control,
    },
    outbox::OutboxStats,
};
pub use synapse_proto::link::v1::{Capacity, FunctionInterval, Tier};
