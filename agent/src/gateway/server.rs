//! The gateway's threads: each runs a single-threaded tokio runtime that accepts from the one
//! listening socket they share — a free thread takes the next connection, so a busy one does
//! not collect a queue (`SO_REUSEPORT` sockets per thread would split connections by hash
//! instead, and lengthen the tail at high concurrency) — and serves each connection from start
//! to end with hyper's HTTP/1.1 server. Like nginx's worker processes, an invocation never
//! changes threads on its way through the gateway: no work stealing and no wake-ups across
//! threads on the request path. At shutdown a thread stops accepting, lets its connections
//! finish the invocations in flight (idle keep-alive connections are closed at once) and ends.

use std::{
    convert::Infallible,
    net::{SocketAddr, TcpListener as StdListener},
    sync::Arc,
    thread::JoinHandle,
};

use hyper::{server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    net::{TcpSocket, TcpStream},
    sync::watch,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::warn;

use super::{Gateway, HEADER_READ_TIMEOUT, records::FLUSH_EVERY};
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
    let handles = (0..threads.max(1))
        .map(|i| {
            let listener = listener.try_clone()?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (gateway, shutdown) = (Arc::new(Gateway::clone(&gateway)), shutdown.clone());
            std::thread::Builder::new()
                .name(format!("gateway-{i}"))
                .spawn(move || runtime.block_on(accept(listener, gateway, shutdown)))
        })
        .collect::<std::io::Result<_>>()?;
    Ok(handles)
}

async fn accept(listener: StdListener, gateway: Arc<Gateway>, mut shutdown: watch::Receiver<bool>) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            warn!("gateway thread cannot poll its listener: {e}");
            return;
        }
    };
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let connections = TaskTracker::new();
    // This thread's own stop signal for its connections: checking it costs them nothing shared
    // with the other threads.
    let stop = CancellationToken::new();
    let mut flush = tokio::time::interval(FLUSH_EVERY);
    let stopping = stopped(&mut shutdown);
    tokio::pin!(stopping);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve(stream, http.clone(), gateway.clone(), stop.clone()));
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
            _ = flush.tick() => gateway.records.flush(&gateway.served),
            _ = &mut stopping => break,
        }
    }
    drop(listener);
    stop.cancel();
    connections.close();
    connections.wait().await;
    gateway.records.flush(&gateway.served);
}

async fn serve(
    stream: TcpStream,
    http: http1::Builder,
    gateway: Arc<Gateway>,
    stop: CancellationToken,
) {
    let service = service_fn(move |request| {
        let gateway = gateway.clone();
        async move { Ok::<_, Infallible>(gateway.handle(request).await) }
    });
    let connection = http.serve_connection(TokioIo::new(Client(stream)), service);
    tokio::pin!(connection);
    // Errors here are the client's (gone mid-request, malformed): nothing to do for us.
    tokio::select! {
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
struct Client(TcpStream);

impl tokio::io::AsyncRead for Client {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Client {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}
