//! The sending half of one agent connection. Frames leave in the order they were queued;
//! an ack leaves only once the batch it acknowledges is on disk, and a refusal sends its
//! error, gives the peer a moment to read it, and closes the connection.

use std::time::{Duration, Instant};

use synapse_link::{close_code, codec::write_frame};
use synapse_proto::link::v1::{Ack, Error, Frame, frame::Body};
use tokio::sync::mpsc;

use crate::{
    metrics::{HubMetrics, KindLabel},
    registry::Durability,
};

/// What the connection wants sent.
pub enum Outgoing {
    Frame(Frame, &'static str),
    /// Ack `sequence` once `ticket` is durable; `received` is when the batch arrived.
    Ack {
        sequence: u64,
        ticket: u64,
        received: Instant,
    },
    /// Send the error and close the connection with `close` and the error's code.
    Refuse {
        error: Error,
        close: u32,
    },
}

/// Runs until the queue closes, a write fails or a refusal closed the connection.
pub async fn run(
    connection: quinn::Connection,
    mut send: quinn::SendStream,
    mut queue: mpsc::Receiver<Outgoing>,
    durability: Durability,
    metrics: HubMetrics,
) {
    while let Some(outgoing) = queue.recv().await {
        let (frame, kind) = match outgoing {
            Outgoing::Frame(frame, kind) => (frame, kind),
            Outgoing::Ack {
                sequence,
                ticket,
                received,
            } => {
                if durability.wait(ticket).await.is_err() {
                    connection.close(close_code::SHUTDOWN.into(), b"hub store closed");
                    return;
                }
                metrics
                    .ack_latency
                    .observe(received.elapsed().as_secs_f64());
                (
                    Frame {
                        body: Some(Body::Ack(Ack { sequence })),
                    },
                    "ack",
                )
            }
            Outgoing::Refuse { error, close } => {
                let reason = error.code.clone();
                let frame = Frame {
                    body: Some(Body::Error(error)),
                };
                if write_frame(&mut send, &frame).await.is_ok() {
                    metrics
                        .frames_out
                        .get_or_create(&KindLabel { kind: "error" })
                        .inc();
                    let _ = send.finish();
                    let _ = tokio::time::timeout(Duration::from_millis(500), send.stopped()).await;
                }
                connection.close(close.into(), reason.as_bytes());
                return;
            }
        };
        if write_frame(&mut send, &frame).await.is_err() {
            return;
        }
        metrics.frames_out.get_or_create(&KindLabel { kind }).inc();
    }
}
