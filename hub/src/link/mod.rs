//! The hub's side of the link: a QUIC endpoint (mutual TLS, ALPN `synapse/1`) accepting
//! agents. Each connection runs on its own task ([`connection`]); a connection that breaks
//! the protocol is closed alone, and the endpoint keeps serving every other agent.

mod connection;
pub mod control;
pub mod frames;
mod revoked;
mod writer;

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio_util::sync::CancellationToken;

use crate::{
    certs::revocation::Revocations,
    metrics::{HubMetrics, ReasonLabel},
    registry::{Durability, Registry},
};
pub use control::{
    AgentOutlet, ConnectedAgent, ControlHandler, ControlRefusal, Handled, OutletError,
};

/// What every connection task shares.
pub struct LinkContext {
    pub hub_id: String,
    pub registry: Registry,
    pub durability: Durability,
    pub metrics: HubMetrics,
    pub max_frame_bytes: usize,
    pub handshake_timeout: Duration,
    next_connection: AtomicU64,
    /// The current connection of each agent, so that a reconnecting agent replaces its
    /// half-dead predecessor.
    current: Mutex<HashMap<String, (u64, quinn::Connection)>>,
    /// Sends control frames to connected agents.
    outlet: AgentOutlet,
    /// The subsystems that take control frames, asked in order.
    handlers: Vec<Arc<dyn ControlHandler>>,
    /// Agents whose certificate is on it are refused, and cut off when it comes to name them.
    revocations: Revocations,
}

impl LinkContext {
    pub fn new(
        hub_id: String,
        registry: Registry,
        durability: Durability,
        metrics: HubMetrics,
        max_frame_bytes: usize,
        handshake_timeout: Duration,
    ) -> Self {
        Self {
            hub_id,
            registry,
            durability,
            metrics,
            max_frame_bytes,
            handshake_timeout,
            next_connection: AtomicU64::new(1),
            current: Mutex::new(HashMap::new()),
            outlet: AgentOutlet::default(),
            handlers: Vec::new(),
            revocations: Revocations::none(),
        }
    }

    /// Refuses agents whose certificate `revocations` names.
    pub fn with_revocations(mut self, revocations: Revocations) -> Self {
        self.revocations = revocations;
        self
    }

    /// Adds a subsystem that takes control frames from agents.
    pub fn with_handler(mut self, handler: Arc<dyn ControlHandler>) -> Self {
        self.handlers.push(handler);
        self
    }

    /// The outlet through which subsystems send control frames to connected agents.
    pub fn outlet(&self) -> AgentOutlet {
        self.outlet.clone()
    }

    fn current(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u64, quinn::Connection)>> {
        self.current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Makes `connection` the agent's current one and closes the one it replaces.
    fn adopt(&self, agent: &str, id: u64, connection: quinn::Connection) {
        if let Some((_, old)) = self.current().insert(agent.to_owned(), (id, connection)) {
            old.close(
                synapse_link::close_code::REPLACED.into(),
                b"replaced by a newer connection",
            );
        }
    }

    fn release(&self, agent: &str, id: u64) {
        let mut current = self.current();
        if current.get(agent).is_some_and(|(held, _)| *held == id) {
            current.remove(agent);
        }
    }

    fn refused_connection(&self, reason: &'static str) {
        self.metrics
            .connections_refused
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }
}

/// Accepts agents on `endpoint` until `shutdown`, then closes every connection.
pub async fn serve(
    endpoint: quinn::Endpoint,
    context: Arc<LinkContext>,
    shutdown: CancellationToken,
) {
    loop {
        let incoming = tokio::select! {
            _ = shutdown.cancelled() => break,
            incoming = endpoint.accept() => match incoming {
                Some(incoming) => incoming,
                None => break,
            },
        };
        let id = context.next_connection.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(connection::handle(context.clone(), incoming, id));
    }
    endpoint.close(
        synapse_link::close_code::SHUTDOWN.into(),
        b"hub shutting down",
    );
    let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
}
