//! The agent side of the link. [`run`] owns the outbox and the connection: it persists every
//! batch it receives, keeps (re)connecting with jittered backoff, sends what is pending and
//! forgets what the hub acknowledged. The caller's channel is drained into the outbox whether
//! or not the hub is reachable, so serving never waits on the link. [`run_with_outbox`] is
//! for a caller that writes the outbox itself, in the same flush as its own records.

mod config;
mod session;

use std::{collections::BTreeMap, net::SocketAddr, sync::Arc};

use synapse_proto::link::v1::{Capacity, FunctionInterval, Tier, frame::Body};
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;

pub use config::LinkConfig;

use crate::{
    backoff::Backoff,
    outbox::{Outbox, OutboxError, OutboxStats},
    tls::{self, TlsError, TlsFiles},
};

/// Who this agent is, as told to the hub in its hello.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentIdentity {
    /// Must equal the name in the agent's certificate (`synapse://agent/ID`).
    pub id: String,
    pub tier: Tier,
    pub labels: BTreeMap<String, String>,
    pub version: String,
    pub capacity: Capacity,
    /// Address (host:port) of the agent's invocation gateway, told to the hub so that other
    /// tiers can forward invocations here; empty when the agent has none.
    pub gateway: String,
}

/// The agent's subsystems (learning, placement, rollouts) talk to the hub through control
/// frames: every frame that is not one of the link's own (`Body::is_link`).
pub struct ControlChannels {
    /// Frames to send to the hub. They wait here while the link is down and leave, in order,
    /// once it is up again; senders use `try_send` so that a long outage never blocks them.
    pub to_hub: mpsc::Receiver<Body>,
    /// Control frames received from the hub, in arrival order.
    pub from_hub: mpsc::Sender<Body>,
}

impl ControlChannels {
    /// Channels that carry nothing, for a link with telemetry only.
    pub fn none() -> Self {
        let (_, to_hub) = mpsc::channel(1);
        let (from_hub, _) = mpsc::channel(1);
        Self { to_hub, from_hub }
    }
}

/// Resources of this host, read with sysinfo.
pub fn host_capacity() -> Capacity {
    let mut system = sysinfo::System::new();
    system.refresh_memory();
    system.refresh_cpu_list(sysinfo::CpuRefreshKind::nothing());
    Capacity {
        cpus: system.cpus().len() as u32,
        memory_bytes: system.total_memory(),
    }
}

/// The state of the link, published on every change.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct LinkStatus {
    pub connected: bool,
    pub link_version: u32,
    /// Smoothed RTT of the current connection in milliseconds.
    pub rtt_ms: f64,
    /// Connections established since start.
    pub connections: u64,
    pub outbox: OutboxStats,
    /// Why the last connection attempt or connection failed.
    pub last_error: Option<String>,
}

/// Why the link cannot run at all (a lost connection is not an error: it is retried).
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot open a QUIC endpoint: {0}")]
    Endpoint(#[from] std::io::Error),
}

/// Runs the link until `shutdown` is cancelled; see [`run_reporting`].
pub async fn run(
    config: LinkConfig,
    identity: AgentIdentity,
    db: sled::Db,
    batches: mpsc::Receiver<Vec<FunctionInterval>>,
    shutdown: CancellationToken,
) -> Result<(), LinkError> {
    let (status, _) = watch::channel(LinkStatus::default());
    run_reporting(config, identity, db, batches, shutdown, status).await
}

/// Runs the link until `shutdown` is cancelled, publishing its state on `status`.
///
/// Each `Vec<FunctionInterval>` received on `batches` becomes one durable telemetry batch.
/// When `batches` closes, the link keeps sending what is pending until `shutdown`.
pub async fn run_reporting(
    config: LinkConfig,
    identity: AgentIdentity,
    db: sled::Db,
    batches: mpsc::Receiver<Vec<FunctionInterval>>,
    shutdown: CancellationToken,
    status: watch::Sender<LinkStatus>,
) -> Result<(), LinkError> {
    let control = ControlChannels::none();
    run_with_control(config, identity, db, batches, control, shutdown, status).await
}

/// [`run_reporting`], and control frames exchanged with the hub through `control`.
pub async fn run_with_control(
    config: LinkConfig,
    identity: AgentIdentity,
    db: sled::Db,
    mut batches: mpsc::Receiver<Vec<FunctionInterval>>,
    control: ControlChannels,
    shutdown: CancellationToken,
    status: watch::Sender<LinkStatus>,
) -> Result<(), LinkError> {
    let outbox = Arc::new(Outbox::open(&db, config.outbox_max_batches)?);
    let endpoint = endpoint(&config)?;
    let wake = Notify::new();
    let intake = async {
        loop {
            let intervals = tokio::select! {
                _ = shutdown.cancelled() => break,
                next = batches.recv() => match next {
                    Some(intervals) => intervals,
                    None => break,
                },
            };
            match outbox.push(intervals).await {
                Ok(pushed) if pushed.dropped > 0 => tracing::warn!(
                    dropped = pushed.dropped,
                    "outbox full: dropped the oldest telemetry batches"
                ),
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "telemetry batch not persisted"),
            }
            if let Ok(stats) = outbox.stats() {
                status.send_modify(|s| s.outbox = stats);
            }
            wake.notify_one();
        }
    };
    let linked = serve(
        &config, &identity, endpoint, &outbox, &wake, control, &shutdown, &status,
    );
    tokio::join!(intake, linked).1
}

/// [`run_with_control`] for a caller that writes the batches into `outbox` itself (with
/// [`Outbox::push_unflushed`] and its own flush of the database, then
/// [`Outbox::durable_up_to`]) and notifies `wake` after each: a batch is then durable at the
/// same moment as the caller's own record of it, and a crash cannot keep one without the
/// other.
pub async fn run_with_outbox(
    config: LinkConfig,
    identity: AgentIdentity,
    outbox: Arc<Outbox>,
    wake: Arc<Notify>,
    control: ControlChannels,
    shutdown: CancellationToken,
    status: watch::Sender<LinkStatus>,
) -> Result<(), LinkError> {
    let endpoint = endpoint(&config)?;
    serve(
        &config, &identity, endpoint, &outbox, &wake, control, &shutdown, &status,
    )
    .await
}

/// The QUIC endpoint the link connects from, with the agent's TLS identity.
fn endpoint(config: &LinkConfig) -> Result<quinn::Endpoint, LinkError> {
    let client = tls::client_config(
        &TlsFiles {
            ca: &config.ca,
            cert: &config.cert,
            key: &config.key,
        },
        config.idle_timeout,
    )?;
    let bind: SocketAddr = ([0, 0, 0, 0], 0).into();
    let mut endpoint = quinn::Endpoint::client(bind)?;
    endpoint.set_default_client_config(client);
    Ok(endpoint)
}

/// Keeps (re)connecting and sending what `outbox` holds until `shutdown`.
#[allow(clippy::too_many_arguments)] // the link's parts, borrowed from its runner
async fn serve(
    config: &LinkConfig,
    identity: &AgentIdentity,
    endpoint: quinn::Endpoint,
    outbox: &Outbox,
    wake: &Notify,
    mut control: ControlChannels,
    shutdown: &CancellationToken,
    status: &watch::Sender<LinkStatus>,
) -> Result<(), LinkError> {
    let stats = outbox.stats()?;
    status.send_modify(|s| s.outbox = stats);
    let mut backoff = Backoff::new(config.reconnect_initial, config.reconnect_max);
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::from_os_rng();
    while !shutdown.is_cancelled() {
        let session = session::Session {
            config,
            identity,
            endpoint: &endpoint,
            outbox,
            wake,
            status,
            shutdown,
        };
        let outcome = session.run(&mut control).await;
        status.send_modify(|s| {
            s.connected = false;
            s.last_error = outcome.error.as_ref().map(|e| e.to_string());
        });
        if outcome.established {
            backoff.reset();
        }
        if let Some(error) = outcome.error {
            tracing::warn!(error = %error, hub = %config.hub, "link to the hub lost");
        }
        let delay = backoff.next_delay(&mut rng);
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = tokio::time::sleep(delay) => {}
        }
    }
    endpoint.close(crate::close_code::SHUTDOWN.into(), b"agent shutting down");
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), endpoint.wait_idle()).await;
    Ok(())
}
