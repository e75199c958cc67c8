//! Watch streams: the current state of every watched item, then each item again whenever it
//! changes. A watcher too slow for the change feed gets a fresh full state instead of the
//! changes it missed.

use std::collections::BTreeSet;

use futures::Stream;
use synapse_proto::console::v1::{WatchEvent, WatchRequest, watch_event::Event};
use tokio::sync::broadcast::error::RecvError;
use tonic::Status;

use super::service::internal;
use crate::registry::{Change, Registry, RegistryError};

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
) -> Result<impl Stream<Item = Result<WatchEvent, Status>> + Send + 'static, Status> {
    let both = !request.agents && !request.functions;
    let (agents, functions) = (request.agents || both, request.functions || both);
    let mut changes = registry.subscribe();
    let first = snapshot(&registry, agents, functions).map_err(internal)?;
    Ok(async_stream(move |tx| async move {
        for event in first {
            if tx.send(Ok(event)).await.is_err() {
                return;
            }
        }
        loop {
            let mut pending = BTreeSet::new();
            match changes.recv().await {
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
