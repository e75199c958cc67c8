//! The hub's Prometheus metrics (`synapse_hub_*`) and the HTTP endpoint that serves them.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `synapse_hub_connected_agents` | gauge | |
//! | `synapse_hub_frames_in_total` | counter | `kind` |
//! | `synapse_hub_frames_out_total` | counter | `kind` |
//! | `synapse_hub_frames_refused_total` | counter | `reason` (malformed, oversized, protocol, version, identity) |
//! | `synapse_hub_connections_refused_total` | counter | `reason` (tls, identity, handshake) |
//! | `synapse_hub_batches_accepted_total` | counter | |
//! | `synapse_hub_dedup_hits_total` | counter | |
//! | `synapse_hub_ack_latency_seconds` | histogram | |
//! | `synapse_hub_agent_outbox_pending_batches` | gauge | `agent` |
//! | `synapse_hub_agent_outbox_dropped_batches` | gauge | `agent` |
//! | `synapse_hub_agent_outbox_lag_seconds` | gauge | `agent` |
//! | `synapse_hub_placement_moves_total` | counter | |
//! | `synapse_hub_placement_moves_over_cap_total` | counter | |

use std::{
    net::SocketAddr,
    sync::{Arc, atomic::AtomicU64},
};

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AgentLabel {
    pub agent: String,
}

/// Every metric of the hub. Cheap to clone.
#[derive(Clone)]
pub struct HubMetrics {
    pub connected_agents: Gauge,
    pub frames_in: Family<KindLabel, Counter>,
    pub frames_out: Family<KindLabel, Counter>,
    pub frames_refused: Family<ReasonLabel, Counter>,
    pub connections_refused: Family<ReasonLabel, Counter>,
    pub batches_accepted: Counter,
    pub dedup_hits: Counter,
    pub ack_latency: Histogram,
    pub outbox_pending: Family<AgentLabel, Gauge>,
    pub outbox_dropped: Family<AgentLabel, Gauge>,
    pub outbox_lag: Family<AgentLabel, Gauge<f64, AtomicU64>>,
    pub placement_moves: Counter,
    pub placement_moves_over_cap: Counter,
    registry: Arc<Registry>,
}

impl Default for HubMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl HubMetrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("synapse_hub");
        let metrics = Self {
            connected_agents: Gauge::default(),
            frames_in: Family::default(),
            frames_out: Family::default(),
            frames_refused: Family::default(),
            connections_refused: Family::default(),
            batches_accepted: Counter::default(),
            dedup_hits: Counter::default(),
            ack_latency: Histogram::new([
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0,
            ]),
            outbox_pending: Family::default(),
            outbox_dropped: Family::default(),
            outbox_lag: Family::default(),
            placement_moves: Counter::default(),
            placement_moves_over_cap: Counter::default(),
            registry: Arc::new(Registry::default()),
        };
        registry.register(
            "connected_agents",
            "Agents connected over the link",
            metrics.connected_agents.clone(),
        );
        registry.register(
            "frames_in",
            "Frames received from agents, by kind",
            metrics.frames_in.clone(),
        );
        registry.register(
            "frames_out",
            "Frames sent to agents, by kind",
            metrics.frames_out.clone(),
        );
        registry.register(
            "frames_refused",
            "Frames refused (the connection is closed), by reason",
            metrics.frames_refused.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections refused before or at hello, by reason",
            metrics.connections_refused.clone(),
        );
        registry.register(
            "batches_accepted",
            "Telemetry batches persisted (each once)",
            metrics.batches_accepted.clone(),
        );
        registry.register(
            "dedup_hits",
            "Telemetry batches received again and acknowledged without counting",
            metrics.dedup_hits.clone(),
        );
        registry.register(
            "ack_latency_seconds",
            "Time from receiving a telemetry batch to sending its ack (persisted in between)",
            metrics.ack_latency.clone(),
        );
        registry.register(
            "agent_outbox_pending_batches",
            "Unacknowledged batches in an agent's outbox, as last reported",
            metrics.outbox_pending.clone(),
        );
        registry.register(
            "agent_outbox_dropped_batches",
            "Batches an agent's full outbox dropped, as last reported",
            metrics.outbox_dropped.clone(),
        );
        registry.register(
            "agent_outbox_lag_seconds",
            "Age of the oldest unacknowledged batch in an agent's outbox, as last reported",
            metrics.outbox_lag.clone(),
        );
        registry.register(
            "placement_moves",
            "Functions moved by placement plans (counted against the move cap)",
            metrics.placement_moves.clone(),
        );
        registry.register(
            "placement_moves_over_cap",
            "Placement moves beyond the configured cap that host capacity forced",
            metrics.placement_moves_over_cap.clone(),
        );
        Self {
            registry: Arc::new(registry),
            ..metrics
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut text = String::new();
        encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }
}

/// Serves `GET /metrics` on `listener` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: HubMetrics,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let metrics = metrics.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    metrics.render(),
                )
            }
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

/// Address a metrics listener is bound to, for logs.
pub fn describe(addr: SocketAddr) -> String {
    format!("http://{addr}/metrics")
}
