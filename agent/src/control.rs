//! Control frames between the agent's subsystems (learning, placement, rollouts) and the hub.
//!
//! A subsystem [`subscribe`](ControlBus::subscribe)s to the frame kinds it owns
//! (`Body::kind`) and gets its own channel of them; it answers through
//! [`ControlBus::to_hub`]. One dispatcher task moves every frame the link receives to the
//! subscriber of its kind, so a slow subsystem never holds up another's frames for long, and a
//! frame no subsystem owns is logged and dropped.

use std::collections::HashMap;

use synapse_link::client::ControlChannels;
use synapse_proto::link::v1::frame::Body;
use tokio::sync::mpsc;

/// Frames waiting to leave for the hub (while the link is down, too).
const TO_HUB_QUEUE: usize = 1024;
/// Frames from the hub waiting for the dispatcher, and for each subscriber.
const FROM_HUB_QUEUE: usize = 256;

/// Why a frame could not be queued for the hub.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ToHubError {
    #[error("the link's queue to the hub is full ({TO_HUB_QUEUE} frames): the hub is away")]
    Full,
    #[error("the link to the hub is stopped")]
    Closed,
}

/// Sends control frames to the hub without waiting; cheap to clone.
#[derive(Clone)]
pub struct ToHub(mpsc::Sender<Body>);

impl ToHub {
    pub fn send(&self, body: Body) -> Result<(), ToHubError> {
        self.0.try_send(body).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => ToHubError::Full,
            mpsc::error::TrySendError::Closed(_) => ToHubError::Closed,
        })
    }
}

/// Routes control frames by kind; built before the link starts.
pub struct ControlBus {
    to_hub: mpsc::Sender<Body>,
    to_hub_rx: mpsc::Receiver<Body>,
    routes: HashMap<&'static str, mpsc::Sender<Body>>,
}

impl Default for ControlBus {
    fn default() -> Self {
        let (to_hub, to_hub_rx) = mpsc::channel(TO_HUB_QUEUE);
        Self {
            to_hub,
            to_hub_rx,
            routes: HashMap::new(),
        }
    }
}

impl ControlBus {
    /// The frames of `kinds` from now on. A kind has one subscriber; subscribing to a kind
    /// again takes it over.
    pub fn subscribe(&mut self, kinds: &[&'static str]) -> mpsc::Receiver<Body> {
        let (tx, rx) = mpsc::channel(FROM_HUB_QUEUE);
        for kind in kinds {
            self.routes.insert(kind, tx.clone());
        }
        rx
    }

    pub fn to_hub(&self) -> ToHub {
        ToHub(self.to_hub.clone())
    }

    /// The link's ends of the bus, and the dispatcher to run beside the link.
    pub fn into_link(self) -> (ControlChannels, impl Future<Output = ()> + Send + 'static) {
        let (from_hub, mut received) = mpsc::channel::<Body>(FROM_HUB_QUEUE);
        let routes = self.routes;
        let dispatch = async move {
            while let Some(body) = received.recv().await {
                let kind = body.kind();
                match routes.get(kind) {
                    Some(route) => {
                        if route.send(body).await.is_err() {
                            tracing::debug!(kind, "control frame for a stopped subsystem");
                        }
                    }
                    None => {
                        tracing::warn!(kind, "control frame from the hub that nothing here takes")
                    }
                }
            }
        };
        let channels = ControlChannels {
            to_hub: self.to_hub_rx,
            from_hub,
        };
        (channels, dispatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use synapse_proto::link::v1::{Ack, Heartbeat};

    #[tokio::test]
    async fn frames_reach_the_subscriber_of_their_kind_only() {
        let mut bus = ControlBus::default();
        let mut acks = bus.subscribe(&["ack"]);
        let mut beats = bus.subscribe(&["heartbeat"]);
        let (channels, dispatch) = bus.into_link();
        let task = tokio::spawn(dispatch);
        channels
            .from_hub
            .send(Body::Heartbeat(Heartbeat::default()))
            .await
            .unwrap();
        channels
            .from_hub
            .send(Body::Ack(Ack { sequence: 7 }))
            .await
            .unwrap();
        assert_eq!(acks.recv().await, Some(Body::Ack(Ack { sequence: 7 })));
        assert!(matches!(beats.recv().await, Some(Body::Heartbeat(_))));
        drop(channels);
        task.await.unwrap();
        assert!(acks.try_recv().is_err(), "nothing else was routed to acks");
    }

    #[test]
    fn a_full_queue_to_the_hub_is_an_error_not_a_wait() {
        let bus = ControlBus::default();
        let to_hub = bus.to_hub();
        for _ in 0..TO_HUB_QUEUE {
            to_hub.send(Body::Ack(Ack { sequence: 1 })).unwrap();
        }
        assert_eq!(
            to_hub.send(Body::Ack(Ack { sequence: 2 })),
            Err(ToHubError::Full)
        );
    }
}
