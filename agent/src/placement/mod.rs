//! The agent's side of cross-tier placement.
//!
//! Every telemetry interval it reports to the hub, per function it runs, what it measured
//! ([`demand`]); it applies its part of the hub's plans ([`apply`]): a pool share through the
//! runtime's `PlacementShare`, and a route in the gateway's forwarding
//! (`crate::gateway::remote`). Other agents forward to the address it declares to the hub:
//! its gateway's peer listener ([`declared_gateway`]), mutual TLS only.

pub mod apply;
pub mod demand;

use std::{sync::Arc, time::Duration};

use serde::Deserialize;
use synapse_proto::link::v1::frame::Body;
use tokio::sync::{mpsc, watch};

use crate::{control::ToHub, gateway::remote::Remote, runtime::Runtime, store::Store};

/// `[placement]` of the agent's configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlacementConfig {
    /// Memory this host gives to warm pools, MB; unset (the default): what sysinfo reads as
    /// available plus what the agent's pools hold now.
    pub memory_mb: Option<u64>,
    /// Longest a host that loses a function keeps serving it locally while the hosts that
    /// gain it warm up (it hands over as soon as one has a ready instance). Default `30s`.
    #[serde(with = "humantime_serde")]
    pub handover_timeout: Duration,
}

impl Default for PlacementConfig {
    fn default() -> Self {
        Self {
            memory_mb: None,
            handover_timeout: Duration::from_secs(30),
        }
    }
}

/// The address this agent declares to the hub for other agents to forward to: where its peer
/// listener (`[gateway] peer_listen`) is bound, or none.
pub fn declared_gateway(peer_listener: Option<std::net::SocketAddr>) -> String {
    peer_listener
        .map(|addr| addr.to_string())
        .unwrap_or_default()
}

/// What the placement task works with.
pub struct PlacementContext {
    pub config: PlacementConfig,
    pub runtime: Runtime,
    pub remote: Arc<Remote>,
    pub store: Arc<Store>,
    pub to_hub: ToHub,
    pub assignments: mpsc::Receiver<Body>,
    /// How often demand is reported (the telemetry interval).
    pub interval: Duration,
}

/// How often hand-overs in progress look at their targets (and warm-ups at their time).
const HANDOVER_CHECK: Duration = Duration::from_secs(1);

/// Reports demand and applies assignments until `shutdown`.
pub async fn run(mut ctx: PlacementContext, mut shutdown: watch::Receiver<bool>) {
    let mut reporter = demand::Reporter::new(&ctx.runtime, ctx.config.memory_mb);
    let mut applier = apply::Applier::new(ctx.config.handover_timeout, ctx.interval);
    let mut report = tokio::time::interval(ctx.interval);
    report.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut check = tokio::time::interval(HANDOVER_CHECK);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = crate::shutdown::stopped(&mut shutdown) => return,
            _ = report.tick() => {
                let body = reporter.report(&ctx.runtime, &ctx.remote, &ctx.store);
                if let Err(e) = ctx.to_hub.send(Body::DemandReport(body)) {
                    tracing::debug!("demand report not queued: {e}");
                }
            }
            _ = check.tick() => applier.hand_over(&ctx.runtime, &ctx.remote).await,
            frame = ctx.assignments.recv() => match frame {
                Some(Body::PlacementAssignment(a)) => applier.apply(a, &ctx.runtime, &ctx.remote),
                Some(other) => tracing::warn!(kind = other.kind(), "unexpected frame for placement"),
                // The link is gone for good; keep the last plan in force.
                None => std::future::pending::<()>().await,
            },
        }
    }
}
