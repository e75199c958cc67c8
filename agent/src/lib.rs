//! The SynapseStream node agent as a library: the binary (`src/main.rs`), the benches and the
//! integration tests all drive these modules.
//!
//! Data flows one way, from the kernel to the decision: `telemetry` (eBPF programs filtered by
//! cgroup) → `store` (sled) → `forecast` → `policy` → `runtime`. `replay` runs the same
//! forecasters and policies over recorded traces with a virtual clock. `placement` follows the
//! hub's cross-tier plans (pool shares, forwarding in the gateway).

pub mod agent;
pub mod cgroup;
pub mod config;
pub mod control;
pub mod drive;
pub mod forecast;
pub mod gateway;
pub mod learning;
pub mod link;
pub mod metrics;
pub mod notify;
pub mod placement;
pub mod policy;
pub mod replay;
pub mod rollout;
pub mod runtime;
pub mod shutdown;
pub mod store;
pub mod telemetry;
pub mod trace;
