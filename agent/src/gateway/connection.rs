//! One client connection, served on the fast path as long as its requests are plain
//! invocations — the common case, written for the fewest steps an invocation can take through
//! a proxy — and handed to hyper, with the bytes already read, at the first request that is not.
//!
//! On the fast path a request's head is read into the connection's buffer and parsed with
//! httparse in place (`request.rs`), its body read to its `Content-Length` within the
//! function's `max_request_bytes`, the invocation forwarded (`invoke.rs`) with the headers as
//! they lie in the buffer, and the answer's head written by hand (`reply.rs`) — no hyper
//! connection object, no `http` request or header map, and the connection's buffers reused
//! from one request to the next. The header timeout's timer is armed only when the head is not there
//! already: a new connection's request has usually arrived by the time it is accepted, and it
//! is read at once with one `recv`, without a trip through the event loop. Kept-alive
//! connections answer their requests in order (pipelined bytes stay in the buffer for the
//! next one) and close after an answer to `Connection: close`.
//!
//! A body is read as it arrives — the buffer grows with the bytes received, not with the length
//! declared — at the pace `gateway.body_*` allows (`request.rs`): a client that falls behind is
//! answered 408 and the connection closed, before any instance is involved.
//!
//! hyper serves the rest as before: other paths, the listing, chunked bodies,
//! `Expect: 100-continue`, HTTP/1.0, malformed heads, and the answers that do not read the
//! body — an unknown function (404) and a declared body over the limit (413).

use std::{os::fd::AsRawFd as _, sync::Arc, time::Instant};

use hyper::server::conn::http1;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};
use tokio_util::sync::CancellationToken;

use super::{
    Gateway, invoke,
    request::{self, BodyPace, Head, MAX_HEADERS},
    server::{Client, Replay, serve_hyper},
};

/// A connection's buffer to begin with; grown to hold a request's whole body when needed.
const BUFFER: usize = 4096;
/// Most room made for a body ahead of its bytes: the buffer grows as they come.
const BODY_AHEAD: usize = 64 * 1024;
/// Past this, a buffer is given back once it is empty, so idle connections stay small.
const KEEP_BUFFER: usize = 64 * 1024;
/// Answer bodies up to this size go out in the same write as the head.
const COALESCE: usize = 16 * 1024;

/// How a request on the fast path went.
enum Served {
    KeepAlive,
    Close,
    /// Not the fast path's request: hyper takes the connection from it on.
    Hyper,
}

/// Serves `stream` until the client closes it, asks to, goes silent past the header timeout,
/// or `stop` is cancelled while the connection is idle.
pub(super) async fn serve(
    stream: TcpStream,
    http: Arc<http1::Builder>,
    gateway: Arc<Gateway>,
    stop: CancellationToken,
) {
    let mut stream = stream;
    let mut buf: Vec<u8> = Vec::with_capacity(BUFFER);
    // Room for an answer's head and a small body from the start: it is written field by field.
    let mut out: Vec<u8> = Vec::with_capacity(BUFFER);
    let stopped = stop.cancelled();
    tokio::pin!(stopped);
    let mut deadline = std::pin::pin!(None::<tokio::time::Sleep>);
    let mut first = true;
    loop {
        // One request: its head, then its body, then the answer.
        deadline.set(None);
        let mut arrived = None;
        let served = loop {
            let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let want = match request::parse(&buf, &mut slots) {
                Head::Other => break Served::Hyper,
                Head::Partial => None,
                Head::Invoke(invoke) => {
                    let Some((index, f)) = gateway.function(invoke.name) else {
                        break Served::Hyper; // hyper answers 404
                    };
                    if invoke.body_len > f.spec.max_request_bytes
                        || !gateway.authorized(index, invoke.headers)
                    {
                        break Served::Hyper; // hyper answers 413, 401 or 403 without reading the body
                    }
                    let arrived = *arrived.get_or_insert_with(Instant::now);
                    if buf.len() < invoke.end() {
                        Some((invoke.end(), invoke.head_len, arrived, index))
                    } else {
                        let body = &buf[invoke.head_len..invoke.end()];
                        let reply = gateway
                            .invoke_served(
                                invoke.name,
                                index,
                                &f,
                                arrived,
                                invoke.query,
                                invoke.headers,
                                body,
                            )
                            .await;
                        gateway.served[index].series.response(reply.status());
                        // At shutdown the answer in flight is the connection's last.
                        let close = invoke.close || stop.is_cancelled();
                        out.clear();
                        let body = reply.write_head(&mut out, close);
                        if write_answer(&mut stream, &mut out, &body).await.is_err() {
                            return;
                        }
                        let end = invoke.end();
                        break if close {
                            Served::Close
                        } else {
                            consume(&mut buf, end);
                            Served::KeepAlive
                        };
                    }
                }
            };
            let read = match want {
                // The rest of the body, at the pace allowed.
                Some((end, head_len, arrived, index)) => {
                    match read_body(&mut stream, &mut buf, end, head_len, arrived, gateway.pace)
                        .await
                    {
                        Ok(Body::Late) => {
                            gateway.served[index].series.response(408);
                            late(&mut stream, &mut out).await;
                            return;
                        }
                        read => read.map(|body| body == Body::Whole),
                    }
                }
                None => {
                    if first && buf.is_empty() {
                        match read_now(&stream, &mut buf) {
                            Ok(0) => return,
                            Ok(_) => continue,
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                            Err(_) => return,
                        }
                    }
                    if deadline.is_none() {
                        deadline.set(Some(tokio::time::sleep(gateway.header_read_timeout)));
                    }
                    let Some(timeout) = deadline.as_mut().as_pin_mut() else {
                        return;
                    };
                    reserve(&mut buf, BUFFER);
                    let idle = buf.is_empty();
                    tokio::select! {
                        biased;
                        read = stream.read_buf(&mut buf) => read.map(|n| n > 0),
                        // An idle connection closes at once at shutdown; one in the middle of
                        // a head is served to its end.
                        _ = stopped.as_mut(), if idle => Ok(false),
                        // Slow or silent: closed, as hyper does.
                        _ = timeout => Ok(false),
                    }
                }
            };
            match read {
                Ok(true) => {}
                Ok(false) | Err(_) => return,
            }
        };
        first = false;
        match served {
            Served::KeepAlive => {}
            Served::Close => return,
            Served::Hyper => break,
        }
    }
    let io = Replay::new(buf, Client(stream));
    serve_hyper(io, &http, gateway, &stop).await;
}

/// Writes the answer: head and body in one write when the body is small.
async fn write_answer(
    stream: &mut TcpStream,
    out: &mut Vec<u8>,
    body: &[u8],
) -> std::io::Result<()> {
    if body.len() <= COALESCE {
        out.extend_from_slice(body);
        stream.write_all(out).await
    } else {
        stream.write_all(out).await?;
        stream.write_all(body).await
    }
}

/// How reading a body ended.
#[derive(PartialEq, Eq)]
enum Body {
    Whole,
    /// The client closed the connection first.
    Gone,
    /// Past the pace's deadline.
    Late,
}

/// Reads until `buf` holds `end` bytes, the body starting at `head_len`, its head read at
/// `started`, at `pace`. The buffer grows by at most [`BODY_AHEAD`] ahead of the bytes.
async fn read_body(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    end: usize,
    head_len: usize,
    started: Instant,
    pace: BodyPace,
) -> std::io::Result<Body> {
    let mut last = started;
    let late = tokio::time::sleep_until(pace.deadline(started, last, buf.len() - head_len).into());
    tokio::pin!(late);
    while buf.len() < end {
        reserve(buf, (end - buf.len()).min(BODY_AHEAD));
        tokio::select! {
            biased;
            read = stream.read_buf(buf) => {
                if read? == 0 {
                    return Ok(Body::Gone);
                }
                last = Instant::now();
                let next = pace.deadline(started, last, buf.len() - head_len);
                late.as_mut().reset(next.into());
            }
            _ = late.as_mut() => return Ok(Body::Late),
        }
    }
    Ok(Body::Whole)
}

/// Answers 408 to a body that came too slowly, on a connection that closes after it.
async fn late(stream: &mut TcpStream, out: &mut Vec<u8>) {
    out.clear();
    let body = invoke::late().write_head(out, true);
    let _ = write_answer(stream, out, &body).await;
}

/// Room for at least `n` more bytes.
fn reserve(buf: &mut Vec<u8>, n: usize) {
    if buf.capacity() - buf.len() < n {
        buf.reserve(n);
    }
}

/// Drops the answered request's bytes, keeping what the client sent after it.
fn consume(buf: &mut Vec<u8>, end: usize) {
    buf.drain(..end);
    if buf.is_empty() && buf.capacity() > KEEP_BUFFER {
        *buf = Vec::with_capacity(BUFFER);
    }
}

/// Reads what the client has sent already with one `recv`, without waiting: tokio learns that
/// a new socket is readable only from its event loop's next turn.
fn read_now(stream: &TcpStream, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    reserve(buf, BUFFER);
    let spare = buf.spare_capacity_mut();
    // SAFETY: `recv` writes at most `spare.len()` bytes into the buffer's spare capacity, on
    // a socket `stream` keeps open.
    let n = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            spare.as_mut_ptr().cast(),
            spare.len(),
            libc::MSG_DONTWAIT,
        )
    };
    let n = usize::try_from(n).map_err(|_| std::io::Error::last_os_error())?;
    // SAFETY: the first `n` bytes of the spare capacity were written by `recv`.
    unsafe { buf.set_len(buf.len() + n) };
    Ok(n)
}
