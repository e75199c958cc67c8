//! Watch streams: the current state of every watched item, then each item again whenever it
//! changes. A watcher too slow for the change feed gets a fresh full state instead of the
//! changes it missed. A stream whose caller's certificate comes onto the revocation list ends
//! with `UNAUTHENTICATED`.

use std::collections::BTreeSet;

use futures::Stream;
use synapse_proto::console::v1::{WatchEvent, WatchRequest, watch_event::Event};
use tokio::sync::broadcast::error::RecvError;
use tonic::Status;

use super::service::internal;
use crate::{
    certs::revocation::Revocations,
    registry::{Change, Registry, RegistryError},
};

/// The caller of a stream, checked again whenever the revocation list changes.
pub struct Caller {
    pub revocations: Revocations,
    /// The caller's DER certificate.
    pub leaf: Vec<u8>,
}

fn snapshot(
    registry: &Registry,
    agents: bool,
    functions: bool,
) -> Result<Vec<WatchEvent>, RegistryError> {
    let mut events = Vec::new();
    if agents {
        events.extend(registry.agents()?.into_iter().map(|a| WatchEvent {
            event: Some(Event::Agent(a)),
        }));
    }
    if functions {
        events.extend(registry.functions()?.into_iter().map(|f| WatchEvent {
            event: Some(Event::Function(f)),
        }));
    }
    Ok(events)
}

/// The stream of events for `request`.
pub fn events(
    registry: Registry,
    request: WatchRequest,
    caller: Caller,
) -> Result<impl Stream<Item = Result<WatchEvent, Status>> + Send + 'static, Status> {
    let both = !request.agents && !request.functions;
    let (agents, functions) = (request.agents || both, request.functions || both);
    let mut changes = registry.subscribe();
    let mut revocations = caller.revocations.subscribe();
    let first = snapshot(&registry, agents, functions).map_err(internal)?;
    Ok(async_stream(move |tx| async move {
        for event in first {
            if tx.send(Ok(event)).await.is_err() {
                return;
            }
        }
        loop {
            let mut pending = BTreeSet::new();
            let change = tokio::select! {
                change = changes.recv() => change,
                listed = revocations.changed() => {
                    if listed.is_ok()
                        && let Some(how) = caller.revocations.revoked(&caller.leaf)
                    {
                        let _ = tx
                            .send(Err(Status::unauthenticated(format!(
                                "the certificate is revoked ({how} is on the hub's revocation list)"
                            ))))
                            .await;
                        return;
                    }
                    continue;
                }
            };
            match change {
                Ok(change) => {
                    pending.insert(change);
                }
                Err(RecvError::Lagged(_)) => {
                    let Ok(all) = snapshot(&registry, agents, functions) else {
                        return;
                    };
                    for event in all {
                        if tx.send(Ok(event)).await.is_err() {
                            return;
                        }
                    }
                    continue;
                }
                Err(RecvError::Closed) => return,
            }
            // Coalesce a burst of changes into one event per item.
            while let Ok(change) = changes.try_recv() {
                pending.insert(change);
            }
            for change in pending {
                let event = match change {
                    Change::Agent(id) if agents => registry.agent(&id).map(|a| a.map(Event::Agent)),
                    Change::Function(name) if functions => {
                        registry.function(&name).map(|f| f.map(Event::Function))
                    }
                    _ => Ok(None),
                };
                let event = match event {
                    Ok(Some(event)) => Ok(WatchEvent { event: Some(event) }),
                    Ok(None) => continue,
                    Err(e) => Err(internal(e)),
                };
                if tx.send(event).await.is_err() {
                    return;
                }
            }
        }
    }))
}

/// A stream fed by a task through a bounded channel; the task ends when the client leaves.
fn async_stream<F, Fut>(body: F) -> impl Stream<Item = Result<WatchEvent, Status>> + Send + 'static
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<WatchEvent, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    tokio::spawn(body(tx));
    tokio_stream::wrappers::ReceiverStream::new(rx)
}
