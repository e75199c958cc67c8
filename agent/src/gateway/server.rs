//! The gateway's threads: each runs a single-threaded tokio runtime that accepts from the one
//! listening socket they share and serves each connection from start to end. New connections
//! go to the threads serving the fewest (`loads.rs`): a thread that holds more than one
//! connection above another leaves the next ones to it, and is woken when that changes. Left
//! to whichever thread reaches `accept` first, one thread can gather more than its share while
//! another has little to do, and at high concurrency the connections of the crowded one wait
//! on it: the gateway's p99 at 64 concurrent clients was a fifth higher that way
//! (`SO_REUSEPORT` sockets per thread would split connections by hash, blind to load, too). A
//! connection is served on the fast path for plain invocations (`connection.rs`), with hyper's
//! HTTP/1.1 server from the first request that is not one. Like nginx's worker processes, an
//! invocation never changes threads on its way through the gateway: no work stealing and no
//! wake-ups across threads on the request path. Past `gateway.max_connections` held by all
//! threads, a new connection is answered 503 at once and closed. At shutdown a thread stops
//! accepting, lets its connections finish the invocations in flight (idle keep-alive
//! connections are closed at once) and ends.

use std::{
    convert::Infallible,
    net::{SocketAddr, TcpListener as StdListener},
    os::fd::AsRawFd as _,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    thread::JoinHandle,
    time::Duration,
};

use hyper::{server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    net::{TcpSocket, TcpStream},
    sync::watch,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{info, warn};

use super::{Gateway, connection, loads::Loads, records::FLUSH_EVERY, reply};
use crate::{metrics::Metrics, shutdown::stopped};

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

/// The gateway's limits on its clients (`[gateway]` in the agent's configuration).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections held by all threads together; past it new ones are refused.
    pub max_connections: usize,
    /// Longest wait for the next byte of a request's body.
    pub body_idle_timeout: Duration,
    /// Slowest a body may arrive, bytes per second on average, once `body_rate_grace` has
    /// passed since its head (0: no minimum).
    pub body_min_rate: u64,
    pub body_rate_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            body_idle_timeout: Duration::from_secs(30),
            body_min_rate: 1024,
            body_rate_grace: Duration::from_secs(10),
        }
    }
}

/// Starts `threads` threads serving `listener` (from [`bind`]), holding at most
/// `max_connections` connections together.
pub(super) fn start(
    listener: &StdListener,
    threads: usize,
    max_connections: usize,
    metrics: &Metrics,
    gateway: Arc<Gateway>,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<Vec<JoinHandle<()>>> {
    let threads = threads.max(1);
    raise_open_files_limit(max_connections);
    let loads = Arc::new(Loads::new(
        threads,
        max_connections,
        metrics.gateway_connections_open.clone(),
        metrics.gateway_connections_refused.clone(),
    ));
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
    loop {
        let may_accept = loads.may_accept(me);
        tokio::select! {
            // Holding back: look again when a connection of ours has ended or another thread
            // took one.
            _ = loads.woken(me).notified(), if !may_accept => {}
            accepted = listener.accept(), if may_accept => match accepted {
                Ok((stream, _)) => {
                    let Some(held) = loads.admit(me) else {
                        refuse(&stream);
                        continue;
                    };
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

/// The answer to a connection past `gateway.max_connections`.
const REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
retry-after: 1\r\nconnection: close\r\ncontent-length: 65\r\n\r\n\
{\"error\":\"the gateway holds gateway.max_connections connections\"}";

/// Answers a connection past the cap with 503, if its socket takes the answer at once, and
/// closes it (on dropping `stream`): nothing of it is read or waited for.
fn refuse(stream: &TcpStream) {
    // A plain non-blocking `send`: tokio's `try_write` would wait for the event loop to have
    // seen the new socket writable first.
    // SAFETY: `send` reads `REFUSED.len()` bytes of a static, on a socket `stream` keeps open.
    unsafe {
        libc::send(
            stream.as_raw_fd(),
            REFUSED.as_ptr().cast(),
            REFUSED.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
}

/// Raises the soft limit on open files to the hard one, so that the connections the gateway
/// may hold are not refused by the kernel first (with EMFILE, which stalls `accept`).
fn raise_open_files_limit(max_connections: usize) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `getrlimit` writes the limit into `limit`, which outlives the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return;
    }
    let soft = limit.rlim_cur;
    if soft < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: `setrlimit` only reads `limit`.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } == 0 {
            info!(
                from = soft,
                to = limit.rlim_cur,
                "raised the open files limit (RLIMIT_NOFILE) to its hard limit"
            );
        }
    }
    if (limit.rlim_cur as u128) < max_connections as u128 + 256 {
        warn!(
            open_files = limit.rlim_cur,
            max_connections,
            "the open files limit is below gateway.max_connections: past it clients are refused by the kernel"
        );
    }
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
    #[test]
    fn the_refusal_is_a_whole_answer() {
        let text = std::str::from_utf8(super::REFUSED).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "));
        assert!(head.ends_with(&format!("content-length: {}", body.len())));
        serde_json::from_str::<serde_json::Value>(body).unwrap();
    }
}
