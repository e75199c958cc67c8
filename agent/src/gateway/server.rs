//! The gateway's threads: each runs a single-threaded tokio runtime that accepts from the one
//! listening socket they share and serves each connection from start to end. New connections
//! go to the threads serving the fewest ([`Loads`]): a thread that holds more than one
//! connection above another leaves the next ones to it. Left to whichever thread reaches
//! `accept` first, one thread can gather more than its share while another has little to do,
//! and at high concurrency the connections of the crowded one wait on it: the gateway's p99
//! at 64 concurrent clients was a fifth higher that way (`SO_REUSEPORT` sockets per thread
//! would split connections by hash, blind to load, too). A connection is served on the fast
//! path for plain invocations (`connection.rs`), with hyper's HTTP/1.1 server from the first
//! request that is not one. Like nginx's worker processes, an invocation never changes threads
//! on its way through the gateway: no work stealing and no wake-ups across threads on the
//! request path (a thread's count of connections is read by the others, never waited on). At
//! shutdown a thread stops accepting, lets its connections finish the invocations in flight
//! (idle keep-alive connections are closed at once) and ends.

use std::{
    convert::Infallible,
    net::{SocketAddr, TcpListener as StdListener},
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering::Relaxed},
    },
    task::{Context, Poll},
    thread::JoinHandle,
};

use hyper::{server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    net::{TcpSocket, TcpStream},
    sync::{Notify, watch},
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::warn;

use super::{Gateway, connection, records::FLUSH_EVERY, reply};
use crate::shutdown::stopped;

/// Connections waiting to be accepted.
const BACKLOG: u32 = 1024;

/// Binds the listening socket on `addr`.
pub(super) fn bind(addr: SocketAddr) -> std::io::Result<StdListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    // Accepted connections inherit it (Linux), so no answer waits on Nagle's algorithm and no
    // connection needs a call of its own to say so.
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)?.into_std()
}

/// Starts `threads` threads serving `listener` (from [`bind`]).
pub(super) fn start(
    listener: &StdListener,
    threads: usize,
    gateway: Arc<Gateway>,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<Vec<JoinHandle<()>>> {
    let threads = threads.max(1);
    let loads = Arc::new(Loads::new(threads));
    let handles = (0..threads)
        .map(|i| {
            let listener = listener.try_clone()?;
            let loads = loads.clone();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (gateway, shutdown) = (Arc::new(Gateway::clone(&gateway)), shutdown.clone());
            std::thread::Builder::new()
                .name(format!("gateway-{i}"))
                .spawn(move || runtime.block_on(accept(listener, gateway, shutdown, loads, i)))
        })
        .collect::<std::io::Result<_>>()?;
    Ok(handles)
}

/// How many connections each gateway thread is serving, and the rule that spreads new ones.
#[derive(Debug)]
pub(super) struct Loads(Box<[AtomicUsize]>);

impl Loads {
    fn new(threads: usize) -> Self {
        Self((0..threads).map(|_| AtomicUsize::new(0)).collect())
    }

    /// Whether thread `me` takes new connections: while it serves at most one more than the
    /// least loaded other thread. The least loaded thread always may, so a new connection is
    /// never left to no one; every thread is woken by it, and the one that may takes it.
    fn may_accept(&self, me: usize) -> bool {
        let mine = self.0[me].load(Relaxed);
        self.0
            .iter()
            .enumerate()
            .all(|(other, load)| other == me || mine <= load.load(Relaxed) + 1)
    }

    /// Thread `me` has taken a connection: held until the returned guard is dropped, which
    /// wakes the thread's accept loop through `done` to look at the loads again.
    fn hold(self: &Arc<Self>, me: usize, done: &Arc<Notify>) -> Held {
        self.0[me].fetch_add(1, Relaxed);
        Held {
            loads: self.clone(),
            me,
            done: done.clone(),
        }
    }
}

/// A connection counted in its thread's load.
struct Held {
    loads: Arc<Loads>,
    me: usize,
    done: Arc<Notify>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.loads.0[self.me].fetch_sub(1, Relaxed);
        self.done.notify_one();
    }
}

async fn accept(
    listener: StdListener,
    gateway: Arc<Gateway>,
    mut shutdown: watch::Receiver<bool>,
    loads: Arc<Loads>,
    me: usize,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            warn!("gateway thread cannot poll its listener: {e}");
            return;
        }
    };
    // For the connections the fast path hands over (`connection.rs`).
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(gateway.header_read_timeout);
    let http = Arc::new(http);
    let connections = TaskTracker::new();
    // This thread's own stop signal for its connections: checking it costs them nothing shared
    // with the other threads.
    let stop = CancellationToken::new();
    let mut flush = tokio::time::interval(FLUSH_EVERY);
    let stopping = stopped(&mut shutdown);
    tokio::pin!(stopping);
    // Notified as this thread's connections end.
    let done = Arc::new(Notify::new());
    loop {
        let may_accept = loads.may_accept(me);
        tokio::select! {
            // Holding back: look again when a connection of ours has ended.
            _ = done.notified(), if !may_accept => {}
            accepted = listener.accept(), if may_accept => match accepted {
                Ok((stream, _)) => {
                    let held = loads.hold(me, &done);
                    let serve = connection::serve(stream, http.clone(), gateway.clone(), stop.clone());
                    connections.spawn(async move {
                        serve.await;
                        drop(held);
                    });
                    // One connection at a time, as nginx's workers do: the connections this
                    // thread already holds go on, and another thread may take the next one.
                    tokio::task::yield_now().await;
                }
                Err(e) => {
                    // Out of file descriptors and the like: say so, breathe, go on.
                    warn!("gateway accept: {e}");
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

/// Serves the rest of a connection with hyper, from the request at the start of `io`.
pub(super) async fn serve_hyper(
    io: Replay,
    http: &http1::Builder,
    gateway: Arc<Gateway>,
    stop: &CancellationToken,
) {
    let service = service_fn(move |request| {
        let gateway = gateway.clone();
        async move { Ok::<_, Infallible>(gateway.handle(request).await) }
    });
    let connection = http.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    // Errors here are the client's (gone mid-request, malformed): nothing to do for us.
    tokio::select! {
        // First the connection: at shutdown hyper still reads the request it was handed.
        biased;
        _ = connection.as_mut() => {}
        _ = stop.cancelled() => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

/// A client's connection. Closing it is closing the socket: the FIN goes out with `close`, and
/// hyper's `shutdown(SHUT_WR)` before it — a system call per connection that nginx does not
/// make either — is left out. hyper closes only after it has read the whole request, so no
/// unread data turns the close into a reset.
pub(super) struct Client(pub TcpStream);

/// A connection the fast path hands to hyper: the bytes it read already, then the socket.
pub(super) struct Replay {
    read: Vec<u8>,
    at: usize,
    client: Client,
}

impl Replay {
    pub fn new(read: Vec<u8>, client: Client) -> Self {
        Self {
            read,
            at: 0,
            client,
        }
    }
}

impl tokio::io::AsyncRead for Replay {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.at < this.read.len() {
            let n = buf.remaining().min(this.read.len() - this.at);
            buf.put_slice(&this.read[this.at..this.at + n]);
            this.at += n;
            if this.at == this.read.len() {
                this.read = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.client.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Replay {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.client.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.client.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.client.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.client.0).poll_flush(cx)
    }

    /// The `Client` way: no `shutdown(SHUT_WR)`, the close sends the FIN.
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_connections_go_to_the_threads_serving_the_fewest() {
        let loads = Arc::new(Loads::new(3));
        let done = Arc::new(Notify::new());
        assert!((0..3).all(|t| loads.may_accept(t)), "all idle: any thread");
        let a = loads.hold(0, &done);
        let b = loads.hold(0, &done);
        // Thread 0 serves two, the others none: it leaves the next ones to them.
        assert!(!loads.may_accept(0));
        assert!(loads.may_accept(1) && loads.may_accept(2));
        let c = loads.hold(1, &done);
        assert!(!loads.may_accept(0), "thread 2 still serves none");
        let d = loads.hold(2, &done);
        assert!(loads.may_accept(0), "one above the others is allowed");
        drop((c, d));
        drop(a);
        assert!(loads.may_accept(0), "its first one ended");
        drop(b);
        assert!((0..3).all(|t| loads.may_accept(t)));
    }

    #[test]
    fn a_single_thread_always_accepts() {
        let loads = Arc::new(Loads::new(1));
        let done = Arc::new(Notify::new());
        let held: Vec<_> = (0..10).map(|_| loads.hold(0, &done)).collect();
        assert!(loads.may_accept(0));
        drop(held);
    }

    #[tokio::test]
    async fn an_ended_connection_wakes_its_thread_to_look_again() {
        let loads = Arc::new(Loads::new(2));
        let done = Arc::new(Notify::new());
        let held = loads.hold(0, &done);
        let woken = done.notified();
        drop(held);
        tokio::time::timeout(std::time::Duration::from_secs(5), woken)
            .await
            .expect("the end of a connection notifies its thread");
    }
}
