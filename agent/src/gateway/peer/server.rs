//! The peer listener: threads of their own (as many as the gateway's), each a single-threaded
//! tokio runtime, as the public gateway's are — so the invocation notes they keep on the
//! thread (`../records.rs`) are flushed by the thread that made them. Each connection's TLS
//! handshake must be done within the gateway's `header_read_timeout` and present a fleet
//! agent certificate; then hyper serves its requests: `POST /v1/functions/NAME/invoke`,
//! marked as forwarded by the certificate's agent, and `GET /v1/functions`, which a host
//! handing a function over reads to see the new host warm. Request bodies are paced as on
//! the public listener, and the listener holds at most `gateway.max_connections` connections
//! of its own: past it a new one is closed at once, before its handshake. At shutdown the
//! threads stop accepting and finish the invocations in flight, as the public gateway's do.

use std::{
    convert::Infallible,
    net::{SocketAddr, TcpListener as StdListener},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    thread::JoinHandle,
};

use hyper::{
    Method, Request, StatusCode, body::Incoming, server::conn::http1, service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{net::TcpStream, sync::watch};
use tokio_rustls::TlsAcceptor;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{info, warn};

use super::tls::{PeerTls, agent_of};
use crate::{
    gateway::{
        Answer, Gateway, error, invoke::Caller, method_not_allowed, records::FLUSH_EVERY, reply,
    },
    shutdown::stopped,
};

/// A bound peer listener and the TLS it speaks.
pub struct PeerListener {
    pub listener: StdListener,
    pub tls: PeerTls,
}

impl PeerListener {
    /// Binds `addr` for the peer link.
    pub fn bind(addr: SocketAddr, tls: PeerTls) -> std::io::Result<Self> {
        Ok(Self {
            listener: crate::gateway::server::bind(addr)?,
            tls,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// Starts `threads` threads serving `peer`.
pub(in crate::gateway) fn start(
    peer: &PeerListener,
    threads: usize,
    max_connections: usize,
    gateway: &Arc<Gateway>,
    shutdown: &watch::Receiver<bool>,
) -> std::io::Result<Vec<JoinHandle<()>>> {
    let acceptor = TlsAcceptor::from(Arc::clone(&peer.tls.server));
    let open = Arc::new(Held {
        count: AtomicUsize::new(0),
        max: max_connections.max(1),
    });
    (0..threads.max(1))
        .map(|i| {
            let listener = peer.listener.try_clone()?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let gateway = Arc::new(Gateway::clone(gateway));
            let (acceptor, shutdown, open) = (acceptor.clone(), shutdown.clone(), open.clone());
            std::thread::Builder::new()
                .name(format!("gateway-peer-{i}"))
                .spawn(move || {
                    runtime.block_on(accept(listener, acceptor, gateway, open, shutdown))
                })
        })
        .collect()
}

/// The peer connections held across the listener's threads, and how many may be.
struct Held {
    count: AtomicUsize,
    max: usize,
}

/// One held connection; it is let go when dropped.
struct Slot(Arc<Held>);

impl Held {
    /// A slot for a new connection, or none when `max` are held.
    fn take(self: &Arc<Self>) -> Option<Slot> {
        self.count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(self.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::AcqRel);
    }
}

async fn accept(
    listener: StdListener,
    acceptor: TlsAcceptor,
    gateway: Arc<Gateway>,
    open: Arc<Held>,
    mut shutdown: watch::Receiver<bool>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            warn!("peer listener thread cannot poll its listener: {e}");
            return;
        }
    };
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(gateway.header_read_timeout);
    let http = Arc::new(http);
    let connections = TaskTracker::new();
    let stop = CancellationToken::new();
    let mut flush = tokio::time::interval(FLUSH_EVERY);
    let stopping = stopped(&mut shutdown);
    tokio::pin!(stopping);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, from)) => {
                    let Some(slot) = open.take() else {
                        warn!(%from, max = open.max, "peer connection closed: the peer listener holds gateway.max_connections");
                        continue;
                    };
                    connections.spawn(serve(
                        slot,
                        stream,
                        from,
                        acceptor.clone(),
                        http.clone(),
                        gateway.clone(),
                        stop.clone(),
                    ));
                }
                Err(e) => {
                    warn!("peer listener accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            _ = flush.tick() => {
                gateway.records.flush(&gateway.served);
                reply::refresh_date();
            }
            _ = &mut stopping => break,
        }
    }
    drop(listener);
    stop.cancel();
    connections.close();
    connections.wait().await;
    gateway.records.flush(&gateway.served);
}

/// One peer connection: the handshake, then its requests, as the agent its certificate names.
async fn serve(
    _slot: Slot,
    stream: TcpStream,
    from: SocketAddr,
    acceptor: TlsAcceptor,
    http: Arc<http1::Builder>,
    gateway: Arc<Gateway>,
    stop: CancellationToken,
) {
    let handshake = tokio::time::timeout(gateway.header_read_timeout, acceptor.accept(stream));
    let tls = tokio::select! {
        done = handshake => match done {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                info!(%from, "peer connection refused: {e}");
                return;
            }
            Err(_) => {
                info!(%from, "peer connection closed: no TLS handshake within the header timeout");
                return;
            }
        },
        _ = stop.cancelled() => return,
    };
    // The verifier let only agent certificates through; read the name it vouched for.
    let peer = match tls.get_ref().1.peer_certificates().and_then(|c| c.first()) {
        Some(cert) => match agent_of(cert) {
            Ok(identity) => identity.name,
            Err(why) => {
                warn!(%from, "peer connection refused: {why}");
                return;
            }
        },
        None => return,
    };
    let peer: Arc<str> = peer.into();
    let service = service_fn(move |request| {
        let (gateway, peer) = (gateway.clone(), peer.clone());
        async move { Ok::<_, Infallible>(gateway.handle_peer(request, &peer).await) }
    });
    let connection = http.serve_connection(TokioIo::new(tls), service);
    tokio::pin!(connection);
    tokio::select! {
        biased;
        _ = connection.as_mut() => {}
        _ = stop.cancelled() => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

impl Gateway {
    /// A request on the peer listener from agent `peer` (its verified certificate's name).
    async fn handle_peer(&self, request: Request<Incoming>, peer: &str) -> Answer {
        let (head, body) = request.into_parts();
        let path = head.uri.path();
        if let Some(name) = path
            .strip_prefix("/v1/functions/")
            .and_then(|rest| rest.strip_suffix("/invoke"))
        {
            if head.method != Method::POST {
                return method_not_allowed("POST");
            }
            return self.invoke_via(name, &head, body, Caller::Peer(peer)).await;
        }
        if path == "/v1/functions" {
            if head.method != Method::GET {
                return method_not_allowed("GET");
            }
            return self.list();
        }
        error(
            StatusCode::NOT_FOUND,
            format!("no such path on the peer listener: {path}"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_past_the_cap_get_no_slot_until_one_is_let_go() {
        let held = Arc::new(Held {
            count: AtomicUsize::new(0),
            max: 2,
        });
        let a = held.take().unwrap();
        let _b = held.take().unwrap();
        assert!(held.take().is_none());
        drop(a);
        assert!(held.take().is_some());
    }
}
