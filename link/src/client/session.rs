//! One connection of the agent to the hub: handshake (hello → welcome), then sending pending
//! batches with a bounded window, applying acknowledgements, and heartbeats carrying the
//! outbox state. Ends when the connection ends or on shutdown; the caller reconnects.

use std::time::{SystemTime, UNIX_EPOCH};

use synapse_proto::link::v1::{Frame, Heartbeat, Hello, frame::Body};
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::{AgentIdentity, ControlChannels, LinkConfig, LinkStatus};
use crate::{
    LINK_VERSIONS, close_code,
    codec::{FrameError, FrameReader, write_frame},
    outbox::{Outbox, OutboxError, OutboxStats},
};

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
pub(super) enum SessionError {
    #[error("cannot resolve hub address {0:?}")]
    Resolve(String),
    #[error("cannot connect: {0}")]
    Connect(#[from] quinn::ConnectError),
    #[error("connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    #[error("timed out waiting for the hub")]
    Timeout,
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("hub refused: {code}: {message}")]
    Refused { code: String, message: String },
    #[error("hub closed the stream")]
    Closed,
    #[error("unexpected frame from the hub: {0}")]
    Protocol(String),
    #[error(transparent)]
    Outbox(#[from] OutboxError),
}

pub(super) struct Outcome {
    /// The hub welcomed this connection.
    pub established: bool,
    pub error: Option<SessionError>,
}

pub(super) struct Session<'a> {
    pub config: &'a LinkConfig,
    pub identity: &'a AgentIdentity,
    pub endpoint: &'a quinn::Endpoint,
    pub outbox: &'a Outbox,
    pub wake: &'a Notify,
    pub status: &'a watch::Sender<LinkStatus>,
    pub shutdown: &'a CancellationToken,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Session<'_> {
    pub async fn run(&self, control: &mut ControlChannels) -> Outcome {
        let mut established = false;
        let error = self
            .connect_and_serve(control, &mut established)
            .await
            .err();
        Outcome { established, error }
    }

    async fn connect_and_serve(
        &self,
        control: &mut ControlChannels,
        established: &mut bool,
    ) -> Result<(), SessionError> {
        let addr = tokio::net::lookup_host(&self.config.hub)
            .await
            .ok()
            .and_then(|mut addrs| addrs.next())
            .ok_or_else(|| SessionError::Resolve(self.config.hub.clone()))?;
        let connecting = self.endpoint.connect(addr, &self.config.server_name)?;
        let connection = tokio::time::timeout(self.config.connect_timeout, connecting)
            .await
            .map_err(|_| SessionError::Timeout)??;
        let result = self.serve(&connection, control, established).await;
        let (code, reason): (u32, &[u8]) = if self.shutdown.is_cancelled() {
            (close_code::SHUTDOWN, b"agent shutting down")
        } else {
            (close_code::PROTOCOL, b"agent closing")
        };
        connection.close(code.into(), reason);
        result
    }

    async fn serve(
        &self,
        connection: &quinn::Connection,
        control: &mut ControlChannels,
        established: &mut bool,
    ) -> Result<(), SessionError> {
        let (mut send, recv) = connection.open_bi().await?;
        let hello = Hello {
            agent_id: self.identity.id.clone(),
            tier: self.identity.tier as i32,
            labels: self.identity.labels.clone().into_iter().collect(),
            version: self.identity.version.clone(),
            link_versions: LINK_VERSIONS.to_vec(),
            capacity: Some(self.identity.capacity),
            gateway: self.identity.gateway.clone(),
            outbox_incarnation: self.outbox.incarnation(),
        };
        write_frame(
            &mut send,
            &Frame {
                body: Some(Body::Hello(hello)),
            },
        )
        .await?;

        // The reader runs on its own task: reading a frame is not cancel-safe.
        let (frames_tx, mut frames) = mpsc::channel(256);
        let mut reader = FrameReader::new(recv, self.config.max_frame_bytes);
        let reader_task = tokio::spawn(async move {
            loop {
                let next = reader.next().await;
                let end = !matches!(next, Ok(Some(_)));
                if frames_tx.send(next).await.is_err() || end {
                    break;
                }
            }
        });
        let result = self
            .exchange(connection, &mut send, &mut frames, control, established)
            .await;
        reader_task.abort();
        result
    }

    /// Sends a heartbeat carrying the outbox state.
    async fn heartbeat(&self, send: &mut quinn::SendStream) -> Result<OutboxStats, SessionError> {
        let stats = self.outbox.stats()?;
        let beat = Heartbeat {
            unix_ms: now_ms(),
            outbox_pending: stats.pending,
            outbox_dropped: stats.dropped,
            outbox_lag_ms: stats.lag_ms,
        };
        write_frame(
            send,
            &Frame {
                body: Some(Body::Heartbeat(beat)),
            },
        )
        .await?;
        Ok(stats)
    }

    async fn exchange(
        &self,
        connection: &quinn::Connection,
        send: &mut quinn::SendStream,
        frames: &mut mpsc::Receiver<Result<Option<Frame>, FrameError>>,
        control: &mut ControlChannels,
        established: &mut bool,
    ) -> Result<(), SessionError> {
        let welcome = tokio::time::timeout(self.config.connect_timeout, frames.recv())
            .await
            .map_err(|_| SessionError::Timeout)?;
        let link_version = match next_body(welcome)? {
            Body::Welcome(welcome) => welcome.link_version,
            other => return Err(unexpected(other)),
        };
        *established = true;
        self.status.send_modify(|s| {
            s.connected = true;
            s.link_version = link_version;
            s.connections += 1;
            s.rtt_ms = connection.rtt().as_secs_f64() * 1e3;
            s.last_error = None;
        });
        tracing::info!(hub = %self.config.hub, link_version, "link to the hub established");

        let mut cursor = 0u64;
        let mut in_flight = 0usize;
        let mut control_open = true;
        let mut heartbeat = tokio::time::interval(self.config.heartbeat_interval);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if in_flight < self.config.max_in_flight {
                let room = self.config.max_in_flight - in_flight;
                for batch in self.outbox.pending_after(cursor, room)? {
                    cursor = batch.sequence;
                    in_flight += 1;
                    write_frame(
                        send,
                        &Frame {
                            body: Some(Body::Telemetry(batch)),
                        },
                    )
                    .await?;
                }
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => {
                    // Leave the hub an up-to-date picture of what is still owed.
                    let _ = self.heartbeat(send).await;
                    return Ok(());
                }
                _ = self.wake.notified(), if in_flight < self.config.max_in_flight => {}
                body = control.to_hub.recv(), if control_open => match body {
                    Some(body) => write_frame(send, &Frame { body: Some(body) }).await?,
                    None => control_open = false,
                },
                _ = heartbeat.tick() => {
                    let stats = self.heartbeat(send).await?;
                    let rtt_ms = connection.rtt().as_secs_f64() * 1e3;
                    self.status.send_modify(|s| { s.outbox = stats; s.rtt_ms = rtt_ms; });
                }
                frame = frames.recv() => match next_body(frame)? {
                    Body::Ack(ack) => {
                        self.outbox.ack(ack.sequence)?;
                        in_flight = in_flight.saturating_sub(1);
                        let stats = self.outbox.stats()?;
                        self.status.send_modify(|s| s.outbox = stats);
                    }
                    Body::Heartbeat(_) => {}
                    other if !other.is_link() => {
                        // A subsystem that went away no longer wants its frames.
                        let _ = control.from_hub.send(other).await;
                    }
                    other => return Err(unexpected(other)),
                },
            }
        }
    }
}

fn next_body(frame: Option<Result<Option<Frame>, FrameError>>) -> Result<Body, SessionError> {
    match frame {
        Some(Ok(Some(Frame {
            body: Some(Body::Error(e)),
        }))) => Err(SessionError::Refused {
            code: e.code,
            message: e.message,
        }),
        Some(Ok(Some(Frame { body: Some(body) }))) => Ok(body),
        Some(Ok(Some(Frame { body: None }))) => Err(SessionError::Protocol("empty frame".into())),
        Some(Err(e)) => Err(e.into()),
        Some(Ok(None)) | None => Err(SessionError::Closed),
    }
}

fn unexpected(body: Body) -> SessionError {
    SessionError::Protocol(body.kind().into())
}
