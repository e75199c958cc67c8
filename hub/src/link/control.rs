//! Control frames: after the welcome, the hub's subsystems (federation, placement, rollouts)
//! and the agents exchange frames of their own on the same stream as telemetry
//! (`Body::is_link` is false for them).
//!
//! A subsystem receives what agents send through a [`ControlHandler`] registered on the
//! [`super::LinkContext`], and sends to connected agents through an [`AgentOutlet`]. Sending
//! never waits: a frame for an agent that is away is refused at once, and the subsystem
//! catches the agent up in [`ControlHandler::connected`] when it returns.

use std::{
    collections::{BTreeMap, HashMap},
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use synapse_proto::link::v1::{Capacity, Frame, Hello, Tier, frame::Body};
use tokio::sync::mpsc;

use super::writer::Outgoing;

/// An agent the hub just welcomed, as its hello described it.
#[derive(Debug, Clone)]
pub struct ConnectedAgent {
    pub agent: String,
    pub tier: Tier,
    pub labels: BTreeMap<String, String>,
    pub version: String,
    pub capacity: Capacity,
    /// Where the agent's gateway accepts forwarded invocations, as [`checked_gateway`] let
    /// it through; empty when it has none.
    pub gateway: String,
    /// The QUIC connection's smoothed round-trip time when it was welcomed.
    pub rtt: Duration,
}

impl ConnectedAgent {
    /// The agent as its hello describes it; its gateway is kept only as [`checked_gateway`]
    /// allows for a connection from `peer` (else logged and left empty: nobody is sent there).
    pub(super) fn from_hello(hello: &Hello, rtt: Duration, peer: IpAddr) -> Self {
        let gateway = checked_gateway(&hello.gateway, peer).unwrap_or_else(|reason| {
            tracing::warn!(
                agent = hello.agent_id,
                "gateway not offered for forwarding: {reason}"
            );
            String::new()
        });
        Self {
            agent: hello.agent_id.clone(),
            tier: Tier::try_from(hello.tier).unwrap_or(Tier::Unspecified),
            labels: hello.labels.clone().into_iter().collect(),
            version: hello.version.clone(),
            capacity: hello.capacity.unwrap_or_default(),
            gateway,
            rtt,
        }
    }
}

/// The gateway address an agent declared, as the hub hands it to other agents as a
/// forwarding target: an `IP:PORT` with a port, on the very address the agent's connection
/// comes from — an agent cannot send others' invocations to a host that is not its own. An
/// unspecified IP (`0.0.0.0:PORT`, `[::]:PORT`) means the agent's own address as the hub
/// sees it. Empty stays empty (no gateway).
pub fn checked_gateway(declared: &str, peer: IpAddr) -> Result<String, String> {
    if declared.is_empty() {
        return Ok(String::new());
    }
    let addr: SocketAddr = declared
        .parse()
        .map_err(|_| format!("{declared:?} is not an IP:PORT address"))?;
    if addr.port() == 0 {
        return Err(format!("{declared} has no port"));
    }
    let peer = peer.to_canonical();
    let ip = addr.ip().to_canonical();
    if ip.is_unspecified() {
        return Ok(SocketAddr::new(peer, addr.port()).to_string());
    }
    if ip != peer {
        return Err(format!(
            "{declared} is not on the address the agent connects from ({peer})"
        ));
    }
    Ok(SocketAddr::new(ip, addr.port()).to_string())
}

/// What a handler did with a control frame.
#[derive(Debug)]
pub enum Handled {
    /// The frame was this handler's; it is dealt with (accepted, or refused and counted).
    Consumed,
    /// Not this handler's frame: the next handler gets it.
    Declined(Body),
}

/// A control frame so broken that the connection is closed (as a malformed frame would be).
/// A frame that is merely wrong (a late gradient, a non-finite value) is refused and counted
/// by its handler instead, and the connection stays.
#[derive(Debug, Clone)]
pub struct ControlRefusal {
    pub code: &'static str,
    pub message: String,
}

/// A hub subsystem that takes part in the link.
///
/// Each method runs on the agent's connection task: it may write to the store briefly (the
/// task lets the runtime move other connections meanwhile) but must not wait on the network.
pub trait ControlHandler: Send + Sync {
    /// A control frame from `agent`.
    fn frame(&self, agent: &str, body: Body) -> Result<Handled, ControlRefusal>;
    /// `agent` was welcomed; its outlet is open, so the handler can send it what it missed.
    fn connected(&self, _agent: &ConnectedAgent) {}
    /// `agent`'s connection ended (it may already have a newer one).
    fn disconnected(&self, _agent: &str) {}
}

/// Why a frame could not be queued for an agent.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OutletError {
    #[error("agent {0} is not connected")]
    NotConnected(String),
    #[error("agent {0} is not reading: its send queue is full")]
    Full(String),
}

struct Peer {
    connection: u64,
    queue: mpsc::Sender<Outgoing>,
}

/// Sends control frames to connected agents; cheap to clone, shared by every subsystem.
#[derive(Clone, Default)]
pub struct AgentOutlet {
    peers: Arc<Mutex<HashMap<String, Peer>>>,
}

impl AgentOutlet {
    fn peers(&self) -> MutexGuard<'_, HashMap<String, Peer>> {
        self.peers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues `body` for `agent`'s current connection without waiting.
    pub fn send(&self, agent: &str, body: Body) -> Result<(), OutletError> {
        let peers = self.peers();
        let peer = peers
            .get(agent)
            .ok_or_else(|| OutletError::NotConnected(agent.to_owned()))?;
        let kind = body.kind();
        peer.queue
            .try_send(Outgoing::Frame(Frame { body: Some(body) }, kind))
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => OutletError::Full(agent.to_owned()),
                mpsc::error::TrySendError::Closed(_) => OutletError::NotConnected(agent.to_owned()),
            })
    }

    /// Agents connected right now, sorted.
    pub fn agents(&self) -> Vec<String> {
        let mut agents: Vec<String> = self.peers().keys().cloned().collect();
        agents.sort();
        agents
    }

    pub fn is_connected(&self, agent: &str) -> bool {
        self.peers().contains_key(agent)
    }

    /// `agent` connected, its frames queued on the receiver returned (for tests of the
    /// subsystems without a network).
    #[cfg(test)]
    pub(crate) fn connect_for_test(&self, agent: &str) -> mpsc::Receiver<Outgoing> {
        let (queue, frames) = mpsc::channel(4096);
        self.open(agent, 0, queue);
        frames
    }

    pub(super) fn open(&self, agent: &str, connection: u64, queue: mpsc::Sender<Outgoing>) {
        self.peers()
            .insert(agent.to_owned(), Peer { connection, queue });
    }

    /// Closes `agent`'s outlet if it still belongs to `connection`; true when it did.
    pub(super) fn close(&self, agent: &str, connection: u64) -> bool {
        let mut peers = self.peers();
        if peers
            .get(agent)
            .is_some_and(|peer| peer.connection == connection)
        {
            peers.remove(agent);
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use synapse_proto::link::v1::Heartbeat;

    #[test]
    fn a_full_queue_is_reported_and_an_older_connection_cannot_close_a_newer_one() {
        let outlet = AgentOutlet::default();
        let (tx, _rx) = mpsc::channel(1);
        outlet.open("edge-1", 2, tx);
        assert!(
            outlet
                .send("edge-1", Body::Heartbeat(Heartbeat::default()))
                .is_ok()
        );
        assert_eq!(
            outlet.send("edge-1", Body::Heartbeat(Heartbeat::default())),
            Err(OutletError::Full("edge-1".into()))
        );
        assert!(!outlet.close("edge-1", 1), "connection 1 was replaced by 2");
        assert_eq!(outlet.agents(), vec!["edge-1".to_owned()]);
        assert!(outlet.close("edge-1", 2));
        assert!(!outlet.is_connected("edge-1"));
    }

    #[test]
    fn a_gateway_is_offered_only_on_the_agents_own_address() {
        let peer: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(checked_gateway("", peer), Ok(String::new()));
        assert_eq!(
            checked_gateway("10.1.2.3:8080", peer),
            Ok("10.1.2.3:8080".into())
        );
        assert_eq!(
            checked_gateway("0.0.0.0:8080", peer),
            Ok("10.1.2.3:8080".into())
        );
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        assert_eq!(
            checked_gateway("10.1.2.3:8080", mapped),
            Ok("10.1.2.3:8080".into())
        );
        for (declared, reason) in [
            ("10.9.9.9:8080", "not on the address"),
            ("10.1.2.3:0", "no port"),
            ("victim.example:80", "not an IP:PORT"),
            ("10.1.2.3", "not an IP:PORT"),
        ] {
            let err = checked_gateway(declared, peer).unwrap_err();
            assert!(err.contains(reason), "{declared}: {err}");
        }
    }

    #[test]
    fn a_frame_for_an_absent_agent_is_refused_at_once() {
        let outlet = AgentOutlet::default();
        let body = Body::Heartbeat(Heartbeat::default());
        assert_eq!(
            outlet.send("edge-1", body),
            Err(OutletError::NotConnected("edge-1".into()))
        );
    }
}
