//! The agent's link to its hub. The protocol, the durable outbox and the client live in the
//! `synapse-link` crate, shared with the hub and its tests; this module is the agent's entry
//! point to them.
//!
//! The agent runs [`run_with_outbox`] on its own task, with an [`Outbox`] opened in its
//! store's sled database. The telemetry collector writes each closed interval set into that
//! outbox just before the store's flush at the end of the interval
//! (`telemetry::collector::LinkSink`), so one flush makes the interval durable both in the
//! store and as a batch owed to the hub, then wakes the link, which sends it when the hub is
//! reachable. A crash at any moment leaves both or neither: what the store kept, the hub gets.

pub use synapse_link::{
    client::{
        AgentIdentity, ControlChannels, LinkConfig, LinkError, LinkStatus, host_capacity,
        run_with_outbox,
    },
    outbox::{Outbox, OutboxStats},
};
pub use synapse_proto::link::v1::{Capacity, FunctionInterval, Tier};
