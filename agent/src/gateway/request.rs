//! The fast path's reading of a request head (`connection.rs`): which requests it serves
//! itself — `POST /v1/functions/{name}/invoke` over HTTP/1.1 with its body framed by one
//! `Content-Length` (or none), no `Expect`, no `Upgrade`, no transfer coding, a plain request
//! target — and where their body ends. Everything else is hyper's, which answers it as before:
//! other paths and methods, HTTP/1.0, chunked bodies, `100-continue`, malformed heads (400).
//! Pure: bytes in, a verdict out.
//!
//! Also how slowly a body may arrive ([`BodyPace`]), on either path, and the reading of a body
//! on hyper's ([`collect`]): a client that stops sending, or sends slower than
//! `gateway.body_min_rate`, is answered 408 and its connection closed — before any instance
//! is leased, so a slow client never holds or harms one.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;

/// Most headers a request may have on the fast path, whose slots are part of each
/// connection's state; a request with more goes to hyper (which takes up to 100).
pub(super) const MAX_HEADERS: usize = 32;
/// Largest head the fast path waits for; a longer one goes to hyper.
pub(super) const MAX_HEAD: usize = 64 * 1024;

/// What the bytes read so far hold.
#[derive(Debug)]
pub(super) enum Head<'h, 'b> {
    /// Not the whole head yet.
    Partial,
    /// An invocation the fast path serves.
    Invoke(Invoke<'h, 'b>),
    /// A request for hyper.
    Other,
}

/// An invocation's head, borrowed from the connection's buffer.
#[derive(Debug)]
pub(super) struct Invoke<'h, 'b> {
    pub name: &'b str,
    pub query: Option<&'b str>,
    pub headers: &'h [httparse::Header<'b>],
    /// Bytes of the head, and of the body after it.
    pub head_len: usize,
    pub body_len: usize,
    /// The client asked to close the connection after the answer.
    pub close: bool,
}

impl Invoke<'_, '_> {
    /// Where the request ends in the buffer.
    pub fn end(&self) -> usize {
        self.head_len + self.body_len
    }
}

/// Reads the head at the start of `buf`.
pub(super) fn parse<'h, 'b>(
    buf: &'b [u8],
    slots: &'h mut [httparse::Header<'b>; MAX_HEADERS],
) -> Head<'h, 'b> {
    let mut request = httparse::Request::new(slots);
    let head_len = match request.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => return Head::Partial,
        // Too long, too many headers, malformed: hyper says so.
        _ => return Head::Other,
    };
    if request.method != Some("POST") || request.version != Some(1) {
        return Head::Other;
    }
    let Some((name, query)) = request.path.and_then(invocation_target) else {
        return Head::Other;
    };
    let mut body_len = None;
    let mut close = false;
    for h in request.headers.iter() {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            if body_len.is_some() {
                return Head::Other;
            }
            match content_length(h.value) {
                Some(n) => body_len = Some(n),
                None => return Head::Other,
            }
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in h.value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"upgrade") {
                    return Head::Other;
                }
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding")
            || name.eq_ignore_ascii_case(b"expect")
            || name.eq_ignore_ascii_case(b"upgrade")
        {
            return Head::Other;
        }
    }
    Head::Invoke(Invoke {
        name,
        query,
        headers: request.headers,
        head_len,
        // Neither a length nor a transfer coding: no body.
        body_len: body_len.unwrap_or(0),
        close,
    })
}

/// What the fast path makes of the bytes at the start of a connection, owned: the view of
/// [`parse`] that the fuzz targets (`fuzz/`) reach, as the parser itself is the gateway's own.
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FastPathHead {
    Partial,
    Other,
    Invoke {
        name: String,
        query: Option<String>,
        headers: usize,
        head_len: usize,
        body_len: usize,
        close: bool,
    },
}

/// [`parse`] on `buf`, as [`FastPathHead`].
#[doc(hidden)]
pub fn parse_head(buf: &[u8]) -> FastPathHead {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    match parse(buf, &mut slots) {
        Head::Partial => FastPathHead::Partial,
        Head::Other => FastPathHead::Other,
        Head::Invoke(i) => FastPathHead::Invoke {
            name: i.name.to_owned(),
            query: i.query.map(str::to_owned),
            headers: i.headers.len(),
            head_len: i.head_len,
            body_len: i.body_len,
            close: i.close,
        },
    }
}

/// The function's name and the query of an invocation's request target, when it is one and
/// made only of the characters a URI may hold as they are (RFC 3986); anything else is
/// hyper's to accept or refuse.
fn invocation_target(target: &str) -> Option<(&str, Option<&str>)> {
    let plain = target
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&b));
    if !plain {
        return None;
    }
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };
    let name = path
        .strip_prefix("/v1/functions/")?
        .strip_suffix("/invoke")?;
    Some((name, query))
}

/// How slowly a client may send a request's body.
#[derive(Debug, Clone, Copy)]
pub(super) struct BodyPace {
    /// Longest wait for the body's next byte.
    pub idle_timeout: Duration,
    /// Slowest average, bytes per second since the head, once `grace` has passed (0: none).
    pub min_rate: u64,
    pub grace: Duration,
}

impl BodyPace {
    /// When a body whose head was read at `started`, of which `received` bytes came, the
    /// last at `last`, is late: at the idle timeout after its last byte, or when its average
    /// rate falls under the minimum after the grace period, whichever comes first.
    pub fn deadline(&self, started: Instant, last: Instant, received: usize) -> Instant {
        let idle = last + self.idle_timeout;
        if self.min_rate == 0 {
            return idle;
        }
        // `received / min_rate` seconds is as long as those bytes may take.
        let earned = Duration::from_secs_f64(received as f64 / self.min_rate as f64);
        idle.min(started + earned.max(self.grace))
    }
}

/// Why a body on hyper's path was not read.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum BodyError {
    /// Over the function's `max_request_bytes`.
    TooLarge,
    /// Past [`BodyPace::deadline`].
    Late,
    /// The client broke the connection or the framing.
    Broken,
}

/// Reads a whole body from hyper, at most `limit` bytes, at `pace`. Memory follows the bytes
/// received, whatever length was declared.
pub(super) async fn collect(
    mut body: Incoming,
    limit: usize,
    pace: BodyPace,
) -> Result<Bytes, BodyError> {
    let started = Instant::now();
    let mut last = started;
    let mut received = 0usize;
    let mut parts: Vec<Bytes> = Vec::new();
    loop {
        let late = tokio::time::Instant::from_std(pace.deadline(started, last, received));
        let frame = match tokio::time::timeout_at(late, body.frame()).await {
            Err(_) => return Err(BodyError::Late),
            Ok(None) => break,
            Ok(Some(Err(_))) => return Err(BodyError::Broken),
            Ok(Some(Ok(frame))) => frame,
        };
        // Trailers are not passed on.
        let Ok(data) = frame.into_data() else {
            continue;
        };
        received += data.len();
        if received > limit {
            return Err(BodyError::TooLarge);
        }
        if !data.is_empty() {
            last = Instant::now();
            parts.push(data);
        }
    }
    Ok(match parts.len() {
        0 => Bytes::new(),
        1 => parts.pop().unwrap_or_default(),
        _ => {
            let mut whole = BytesMut::with_capacity(received);
            parts.iter().for_each(|p| whole.extend_from_slice(p));
            whole.freeze()
        }
    })
}

/// A `Content-Length` value: digits only, as hyper takes it.
fn content_length(value: &[u8]) -> Option<usize> {
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> String {
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        match parse(text.as_bytes(), &mut slots) {
            Head::Partial => "partial".into(),
            Head::Other => "other".into(),
            Head::Invoke(i) => format!(
                "invoke {} {:?} head {} body {} close {} headers {}",
                i.name,
                i.query,
                i.head_len,
                i.body_len,
                i.close,
                i.headers.len()
            ),
        }
    }

    const INVOKE: &str = "POST /v1/functions/echo/invoke HTTP/1.1\r\nHost: x\r\n";

    #[test]
    fn a_body_is_late_at_its_idle_timeout_or_under_its_minimum_rate() {
        let pace = BodyPace {
            idle_timeout: Duration::from_secs(30),
            min_rate: 1000,
            grace: Duration::from_secs(10),
        };
        let t0 = Instant::now();
        let s = Duration::from_secs;
        // Nothing yet: the grace period, which is sooner than the idle timeout.
        assert_eq!(pace.deadline(t0, t0, 0), t0 + s(10));
        // 20 kB earned 20 s, sooner than the idle timeout after the last byte (35 s).
        assert_eq!(pace.deadline(t0, t0 + s(5), 20_000), t0 + s(20));
        assert_eq!(pace.deadline(t0, t0 + s(1), 100_000), t0 + s(31));
        // Without a minimum rate, only the idle timeout counts.
        let idle_only = BodyPace {
            min_rate: 0,
            ..pace
        };
        assert_eq!(idle_only.deadline(t0, t0 + s(2), 0), t0 + s(32));
    }

    #[test]
    fn an_invocation_with_a_length_is_served_on_the_fast_path() {
        let head = format!("{INVOKE}Content-Length: 5\r\n\r\n");
        assert_eq!(
            parsed(&format!("{head}hello")),
            format!(
                "invoke echo None head {} body 5 close false headers 2",
                head.len()
            )
        );
        assert_eq!(
            parsed(
                "POST /v1/functions/f/invoke?a=1&b=%20 HTTP/1.1\r\nconnection: keep-alive, Close\r\n\r\n"
            ),
            "invoke f Some(\"a=1&b=%20\") head 81 body 0 close true headers 1"
        );
    }

    #[test]
    fn a_head_not_yet_complete_waits_for_more() {
        assert_eq!(parsed(""), "partial");
        assert_eq!(parsed(INVOKE), "partial");
        assert_eq!(parsed("POST /v1/functions/echo/inv"), "partial");
    }

    #[test]
    fn everything_else_is_left_to_hyper() {
        for head in [
            "GET /v1/functions HTTP/1.1\r\n\r\n",
            "GET /v1/functions/echo/invoke HTTP/1.1\r\n\r\n",
            "POST /v1/functions/echo/invoke HTTP/1.0\r\nContent-Length: 1\r\n\r\n",
            "POST /v1/functions/echo HTTP/1.1\r\n\r\n",
            "POST /elsewhere HTTP/1.1\r\n\r\n",
            "POST http://x/v1/functions/echo/invoke HTTP/1.1\r\n\r\n",
            "POST /v1/functions/echo/invoke?q=\"x\" HTTP/1.1\r\n\r\n",
            "POST /v1/functions/echo/invoke HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST /v1/functions/echo/invoke HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
            "POST /v1/functions/echo/invoke HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\n",
            "POST /v1/functions/echo/invoke HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
            "POST /v1/functions/echo/invoke HTTP/1.1\r\nContent-Length: +1\r\n\r\n",
            "POST /v1/functions/echo/invoke HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
            "POST /v1/functions/echo/invoke HTTP/1.1\r\nBad Header: x\r\n\r\n",
            "\u{1}\u{2}garbage\r\n\r\n",
        ] {
            assert_eq!(parsed(head), "other", "{head:?}");
        }
        let many: String = (0..MAX_HEADERS).map(|i| format!("x-{i}: 1\r\n")).collect();
        assert_eq!(parsed(&format!("{INVOKE}{many}\r\n")), "other");
        let long = format!("{INVOKE}x-long: {}", "a".repeat(MAX_HEAD));
        assert_eq!(
            parsed(&long),
            "other",
            "a head past the limit is not waited for"
        );
    }
}
