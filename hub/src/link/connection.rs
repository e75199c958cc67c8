//! One agent connection on the hub: check the certificate's role and that it is not revoked
//! (and close the connection if the revocation list comes to name it), read the hello (its agent
//! id must be the certificate's name; a common link version must exist), welcome, then
//! serve telemetry and heartbeats until the agent leaves or breaks the protocol.
//!
//! A telemetry batch is applied to the registry (or recognised as a duplicate) in arrival
//! order; its ack is queued behind a durability ticket, so reading never waits on a flush.

use std::{sync::Arc, time::Instant};

use synapse_link::{
    LINK_VERSIONS, close_code,
    codec::{FrameError, FrameReader},
    identity::Role,
    tls,
};
use synapse_proto::link::v1::{Error, Frame, Heartbeat, Hello, Tier, Welcome, frame::Body};
use tokio::sync::mpsc;

use super::{
    LinkContext,
    control::{ConnectedAgent, Handled},
    frames::{heartbeat_refusal, hello_refusal},
    revoked::{cut_off_when_revoked, leaf_certificate},
    writer::{self, Outgoing},
};
use crate::{
    metrics::{AgentLabel, KindLabel, ReasonLabel},
    registry::{Applied, now_ms},
};

/// Why the hub refuses a connection or a frame: close code and `Error.code`.
struct Refusal {
    close: u32,
    code: &'static str,
    message: String,
}

impl Refusal {
    fn new(close: u32, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            close,
            code,
            message: message.into(),
        }
    }
}

fn kind(body: &Body) -> &'static str {
    body.kind()
}

pub async fn handle(context: Arc<LinkContext>, incoming: quinn::Incoming, id: u64) {
    let connection = match incoming.await {
        Ok(connection) => connection,
        Err(e) => {
            context.refused_connection("tls");
            tracing::info!(error = %e, "link handshake refused");
            return;
        }
    };
    let peer = match tls::peer_identity(&connection) {
        Ok(peer) if peer.role == Role::Agent => peer,
        Ok(peer) => {
            context.refused_connection("identity");
            tracing::info!(peer = %peer, "link refused: not an agent certificate");
            connection.close(close_code::IDENTITY.into(), b"identity");
            return;
        }
        Err(e) => {
            context.refused_connection("identity");
            tracing::info!(error = %e, "link refused: no identity in certificate");
            connection.close(close_code::IDENTITY.into(), b"identity");
            return;
        }
    };
    // Subscribed before the check, so that a change of the list right after it is not missed.
    let changes = context.revocations.subscribe();
    if let Some(how) = leaf_certificate(&connection)
        .as_deref()
        .and_then(|der| context.revocations.revoked(der))
    {
        context.refused_connection("revoked");
        tracing::warn!(agent = %peer.name, revoked = how, "link refused: certificate revoked");
        connection.close(close_code::IDENTITY.into(), b"revoked");
        return;
    }
    tokio::spawn(cut_off_when_revoked(
        context.clone(),
        connection.clone(),
        changes,
    ));
    let streams = tokio::time::timeout(context.handshake_timeout, connection.accept_bi()).await;
    let (send, recv) = match streams {
        Ok(Ok(streams)) => streams,
        outcome => {
            let cause = match outcome {
                Err(_) => "no stream opened in time".to_owned(),
                Ok(Err(e)) => e.to_string(),
                Ok(Ok(_)) => unreachable!("handled above"),
            };
            context.refused_connection("handshake");
            tracing::warn!(agent = %peer.name, cause, "link connection without a stream");
            connection.close(close_code::PROTOCOL.into(), b"no stream");
            return;
        }
    };
    let (queue, outgoing) = mpsc::channel(1024);
    let writer = tokio::spawn(writer::run(
        connection.clone(),
        send,
        outgoing,
        context.durability.clone(),
        context.metrics.clone(),
    ));
    let mut reader = FrameReader::new(recv, context.max_frame_bytes);
    let session = Session {
        context: &context,
        connection: &connection,
        queue: &queue,
        agent: &peer.name,
        id,
    };
    if let Err(refusal) = session.run(&mut reader).await {
        context
            .metrics
            .frames_refused
            .get_or_create(&ReasonLabel {
                reason: refusal.code,
            })
            .inc();
        tracing::warn!(agent = %peer.name, code = refusal.code, message = %refusal.message, "link connection refused");
        let error = Error {
            code: refusal.code.into(),
            message: refusal.message,
        };
        let _ = queue
            .send(Outgoing::Refuse {
                error,
                close: refusal.close,
            })
            .await;
    }
    if context.outlet.close(&peer.name, id) {
        for handler in &context.handlers {
            handler.disconnected(&peer.name);
        }
    }
    drop(queue);
    let _ = writer.await;
    tracing::info!(agent = %peer.name, "agent disconnected");
    context.release(&peer.name, id);
    if let Err(e) = context.registry.disconnect(&peer.name, id) {
        tracing::error!(error = %e, agent = %peer.name, "registry update at disconnect failed");
    }
    context
        .metrics
        .connected_agents
        .set(context.registry.connected() as i64);
}

struct Session<'a> {
    context: &'a LinkContext,
    connection: &'a quinn::Connection,
    queue: &'a mpsc::Sender<Outgoing>,
    agent: &'a str,
    id: u64,
}

impl Session<'_> {
    async fn next(&self, reader: &mut FrameReader) -> Result<Option<Body>, Refusal> {
        match reader.next().await {
            Ok(Some(Frame { body: Some(body) })) => {
                self.context
                    .metrics
                    .frames_in
                    .get_or_create(&KindLabel { kind: kind(&body) })
                    .inc();
                Ok(Some(body))
            }
            Ok(_) => Ok(None),
            Err(e) => match e.refusal_code() {
                Some(code) => Err(Refusal::new(close_code::PROTOCOL, code, e.to_string())),
                None => {
                    if !matches!(e, FrameError::Read(_)) {
                        tracing::debug!(agent = self.agent, error = %e, "link stream ended");
                    }
                    Ok(None)
                }
            },
        }
    }

    async fn send(&self, body: Body) -> Result<(), Refusal> {
        let kind = kind(&body);
        self.queue
            .send(Outgoing::Frame(Frame { body: Some(body) }, kind))
            .await
            .map_err(|_| Refusal::new(close_code::SHUTDOWN, "closed", "connection writer stopped"))
    }

    fn check_hello(&self, hello: &Hello) -> Result<u32, Refusal> {
        if hello.agent_id != self.agent {
            return Err(Refusal::new(
                close_code::IDENTITY,
                "identity",
                format!(
                    "hello names agent {:?} but the certificate is for {:?}",
                    hello.agent_id, self.agent
                ),
            ));
        }
        if !matches!(
            Tier::try_from(hello.tier),
            Ok(Tier::Edge | Tier::Regional | Tier::Cloud)
        ) {
            return Err(Refusal::new(
                close_code::PROTOCOL,
                "protocol",
                format!("tier {} is not edge, regional or cloud", hello.tier),
            ));
        }
        if let Some(reason) = hello_refusal(hello) {
            return Err(Refusal::new(close_code::PROTOCOL, "malformed", reason));
        }
        LINK_VERSIONS
            .iter()
            .rev()
            .find(|v| hello.link_versions.contains(v))
            .copied()
            .ok_or_else(|| {
                Refusal::new(
                    close_code::VERSION,
                    "version",
                    format!(
                        "agent speaks {:?}, hub speaks {:?}",
                        hello.link_versions, LINK_VERSIONS
                    ),
                )
            })
    }

    /// Hands a control frame to the first subsystem that takes it.
    fn control(&self, body: Body) -> Result<(), Refusal> {
        let kind = kind(&body);
        let mut body = body;
        for handler in &self.context.handlers {
            let handled = tokio::task::block_in_place(|| handler.frame(self.agent, body))
                .map_err(|r| Refusal::new(close_code::PROTOCOL, r.code, r.message))?;
            match handled {
                Handled::Consumed => return Ok(()),
                Handled::Declined(declined) => body = declined,
            }
        }
        Err(Refusal::new(
            close_code::PROTOCOL,
            "protocol",
            format!("no subsystem of this hub takes {kind} frames"),
        ))
    }

    /// Records a checked heartbeat's outbox figures, in the registry and as metrics.
    fn keep_heartbeat(&self, beat: &Heartbeat) -> Result<(), crate::registry::RegistryError> {
        let context = self.context;
        context
            .registry
            .heartbeat(self.agent, beat, self.connection.rtt())?;
        let label = AgentLabel {
            agent: self.agent.to_owned(),
        };
        let metrics = &context.metrics;
        metrics
            .outbox_pending
            .get_or_create(&label)
            .set(beat.outbox_pending as i64);
        metrics
            .outbox_dropped
            .get_or_create(&label)
            .set(beat.outbox_dropped as i64);
        metrics
            .outbox_lag
            .get_or_create(&label)
            .set(beat.outbox_lag_ms as f64 / 1e3);
        Ok(())
    }

    async fn run(&self, reader: &mut FrameReader) -> Result<(), Refusal> {
        let context = self.context;
        let first = tokio::time::timeout(context.handshake_timeout, self.next(reader))
            .await
            .map_err(|_| Refusal::new(close_code::PROTOCOL, "protocol", "no hello in time"))??;
        let hello = match first {
            Some(Body::Hello(hello)) => hello,
            Some(other) => {
                return Err(Refusal::new(
                    close_code::PROTOCOL,
                    "protocol",
                    format!("expected hello, got {}", kind(&other)),
                ));
            }
            None => return Ok(()),
        };
        let link_version = self.check_hello(&hello)?;
        let store_failed = |e: crate::registry::RegistryError| {
            tracing::error!(error = %e, "registry write failed");
            Refusal::new(
                close_code::SHUTDOWN,
                "unavailable",
                "hub store failed; retry later",
            )
        };
        context
            .registry
            .connect(&hello, link_version, self.id, self.connection.rtt())
            .map_err(store_failed)?;
        context.adopt(self.agent, self.id, self.connection.clone());
        context
            .metrics
            .connected_agents
            .set(context.registry.connected() as i64);
        tracing::info!(
            agent = self.agent,
            tier = hello.tier,
            link_version,
            "agent connected"
        );
        self.send(Body::Welcome(Welcome {
            link_version,
            hub_id: context.hub_id.clone(),
        }))
        .await?;
        context.outlet.open(self.agent, self.id, self.queue.clone());
        let connected = ConnectedAgent::from_hello(
            &hello,
            self.connection.rtt(),
            self.connection.remote_address().ip(),
        );
        tokio::task::block_in_place(|| {
            for handler in &context.handlers {
                handler.connected(&connected);
            }
        });

        while let Some(body) = self.next(reader).await? {
            context
                .registry
                .seen(self.agent, self.id, self.connection.rtt());
            match body {
                Body::Telemetry(batch) => {
                    let received = Instant::now();
                    // The store may block (a flush in progress); let the runtime move other
                    // connections off this worker meanwhile.
                    let applied = tokio::task::block_in_place(|| {
                        context.registry.apply(self.agent, hello.tier, &batch)
                    })
                    .map_err(store_failed)?;
                    match applied {
                        Applied::Accepted => context.metrics.batches_accepted.inc(),
                        Applied::Duplicate => context.metrics.dedup_hits.inc(),
                    };
                    let ticket = context.durability.ticket();
                    let ack = Outgoing::Ack {
                        sequence: batch.sequence,
                        ticket,
                        received,
                    };
                    if self.queue.send(ack).await.is_err() {
                        return Ok(());
                    }
                }
                Body::Heartbeat(beat) => {
                    if let Some(reason) = heartbeat_refusal(&beat) {
                        context
                            .metrics
                            .frames_refused
                            .get_or_create(&ReasonLabel {
                                reason: "malformed",
                            })
                            .inc();
                        tracing::warn!(agent = self.agent, "{reason}: its figures are not kept");
                    } else {
                        self.keep_heartbeat(&beat).map_err(store_failed)?;
                    }
                    self.send(Body::Heartbeat(Heartbeat {
                        unix_ms: now_ms(),
                        ..Default::default()
                    }))
                    .await?;
                }
                other if !other.is_link() => self.control(other)?,
                other => {
                    return Err(Refusal::new(
                        close_code::PROTOCOL,
                        "protocol",
                        format!("{} is not a frame an agent sends", kind(&other)),
                    ));
                }
            }
        }
        Ok(())
    }
}
