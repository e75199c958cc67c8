//! Sends one invocation to one instance over a fresh HTTP/1.1 connection (one connection per
//! invocation, so the kernel's accept count is the invocation count) and reads its whole
//! answer, so that a crash in the middle is seen as a failure of that instance. A connection
//! to a local instance ends with a reset once the answer is read ([`close_with_reset`]): no
//! socket is left in TIME_WAIT per invocation.
//!
//! The instance is a local process the agent started, and this exchange is on every
//! invocation's path, so it is done directly: the request is written out in one piece
//! (request line, headers, `Connection: close`, `Content-Length`, body) and the answer's head
//! parsed with httparse — hyper's own parser — without a client connection object per
//! invocation. The request's headers come as parsed (name and value, borrowed from wherever
//! the gateway read them) and the answer's end-to-end headers go back as the lines they will
//! be written as, so the gateway's fast path builds no header map either way (hyper's path
//! converts with [`fields_of`] and [`Answer::into_response`]). The answer's body is framed by
//! `Transfer-Encoding: chunked` (decoded here), `Content-Length`, or the end of the
//! connection; interim `1xx` answers are skipped. The same exchange runs over another
//! agent's peer link ([`exchange_on`], on the TLS connection `peer/client.rs` makes).

use std::{net::SocketAddr, time::Duration};

use bytes::{Buf as _, Bytes, BytesMut};
use hyper::{
    HeaderMap, Method, Response, StatusCode,
    header::{HeaderName, HeaderValue},
};
use socket2::{Domain, Socket, Type};
use tokio::{
    io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _},
    net::TcpStream,
};

/// Why an instance did not answer.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// Nothing was delivered: safe to try another instance.
    #[error("connecting to the instance: {0}")]
    Connect(std::io::Error),
    #[error("the instance broke the exchange: {0}")]
    Broken(String),
    #[error("the instance took longer than the invocation timeout ({0:?})")]
    Timeout(Duration),
}

fn broken(why: impl std::fmt::Display) -> ForwardError {
    ForwardError::Broken(why.to_string())
}

/// Headers that belong to one hop and are not passed on.
const HOP_BY_HOP: &[&[u8]] = &[
    b"connection",
    b"te",
    b"trailer",
    b"transfer-encoding",
    b"upgrade",
    b"proxy-authorization",
    b"proxy-authenticate",
    b"host",
    b"content-length",
    b"keep-alive",
];

/// Largest answer head read, bytes; and most headers in it.
const MAX_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 100;
/// Bodies up to this size go out in the same write as the head.
const COALESCE: usize = 16 * 1024;

/// Whether the header `name` (any case) belongs to one hop only.
pub(super) fn hop_by_hop(name: &[u8]) -> bool {
    HOP_BY_HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// An instance's answer as read off the wire: its status, its end-to-end header lines
/// (`name: value\r\n` each, names in lower case as hyper writes them) and its whole body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub fields: Vec<u8>,
    pub body: Bytes,
    /// The connection the answer came on, closed when the answer is dropped: the fast path
    /// drops it once the answer is written to the client, as nginx closes its upstream after
    /// passing the answer on, so the close and what it sets off in the kernel are not on the
    /// invocation's path.
    pub connection: Option<TcpStream>,
}

impl Answer {
    /// The end-to-end headers, name and value.
    pub fn fields(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.fields
            .split(|&b| b == b'\n')
            .filter_map(|line| line.strip_suffix(b"\r"))
            .filter_map(|line| {
                let colon = line.iter().position(|&b| b == b':')?;
                let value = &line[colon + 1..];
                Some((&line[..colon], value.strip_prefix(b" ").unwrap_or(value)))
            })
    }

    /// The answer with `http` types, for the hyper path and cross-tier forwarding.
    pub fn into_response(self) -> Result<Response<Bytes>, ForwardError> {
        let status = StatusCode::from_u16(self.status).map_err(broken)?;
        let mut headers = HeaderMap::new();
        for (name, value) in self.fields() {
            headers.append(
                HeaderName::from_bytes(name).map_err(broken)?,
                HeaderValue::from_bytes(value).map_err(broken)?,
            );
        }
        let mut response = Response::new(self.body);
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        Ok(response)
    }
}

/// A request's headers as name and value, borrowed from wherever they were parsed.
pub type Fields<'a> = [httparse::Header<'a>];

/// `headers` as [`Fields`].
pub fn fields_of(headers: &HeaderMap) -> Vec<httparse::Header<'_>> {
    headers
        .iter()
        .map(|(name, value)| httparse::Header {
            name: name.as_str(),
            value: value.as_bytes(),
        })
        .collect()
}

/// Sends one request, headers given as parsed, and reads the whole answer.
pub async fn exchange(
    addr: SocketAddr,
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &Fields<'_>,
    body: &[u8],
    timeout: Duration,
) -> Result<Answer, ForwardError> {
    let mut out = request_head(&addr, method, path, query, headers, body.len());
    let exchange = async {
        let small = body.len() <= COALESCE;
        if small {
            // One write and then only reads: Nagle's algorithm never holds anything back.
            out.extend_from_slice(body);
        }
        let (mut stream, sent) = connect_and_send(addr, &out).await?;
        if !small {
            let _ = stream.set_nodelay(true);
        }
        stream.write_all(&out[sent..]).await.map_err(broken)?;
        if !small {
            stream.write_all(body).await.map_err(broken)?;
        }
        let mut reader = Reader {
            stream,
            buf: BytesMut::with_capacity(4096),
        };
        let mut answer = reader.answer(method == Method::HEAD).await?;
        if addr.ip().is_loopback() {
            close_with_reset(&reader.stream);
        }
        answer.connection = Some(reader.stream);
        Ok(answer)
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or(Err(ForwardError::Timeout(timeout)))
}

/// Sends one request on `stream`, an established connection to another agent's gateway
/// (`host` names it in the request), and reads the whole answer. No time limit: the caller
/// sets one.
pub async fn exchange_on<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    host: &str,
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &Fields<'_>,
    body: &[u8],
) -> Result<Answer, ForwardError> {
    let mut out = request_head(&host, method, path, query, headers, body.len());
    out.extend_from_slice(body);
    stream.write_all(&out).await.map_err(broken)?;
    stream.flush().await.map_err(broken)?;
    let mut reader = Reader {
        stream,
        buf: BytesMut::with_capacity(4096),
    };
    reader.answer(method == Method::HEAD).await
}

/// Opens a connection to `addr` and sends what of `data` the socket takes at once: the number
/// of bytes sent comes back with the stream.
///
/// On the loopback interface the handshake is done by the time `connect` returns (the kernel
/// answers the SYN within the call), so the request goes out straight away, without waiting
/// for the event loop to report the socket writable and asking the socket for a pending error
/// — a turn of the loop and a system call per invocation. Elsewhere, or when the handshake is
/// still under way, it waits for the connection as usual. A refused connection is a
/// [`ForwardError::Connect`] either way: nothing was delivered.
async fn connect_and_send(
    addr: SocketAddr,
    data: &[u8],
) -> Result<(TcpStream, usize), ForwardError> {
    if !addr.ip().is_loopback() {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(ForwardError::Connect)?;
        return Ok((stream, 0));
    }
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM.nonblocking(), None)
        .map_err(ForwardError::Connect)?;
    if let Err(e) = socket.connect(&addr.into())
        && e.raw_os_error() != Some(libc::EINPROGRESS)
    {
        return Err(ForwardError::Connect(e));
    }
    let sent = match socket.send_with_flags(data, libc::MSG_NOSIGNAL) {
        Ok(n) => n,
        // Still connecting: the writes below wait for it.
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
        Err(e) => return Err(ForwardError::Connect(e)),
    };
    let std = std::net::TcpStream::from(socket);
    let stream = TcpStream::from_std(std).map_err(ForwardError::Connect)?;
    if sent == 0 {
        // As `TcpStream::connect` does: writable once the handshake is over, then its outcome.
        stream.writable().await.map_err(ForwardError::Connect)?;
        if let Some(e) = stream.take_error().map_err(ForwardError::Connect)? {
            return Err(ForwardError::Connect(e));
        }
    }
    Ok((stream, sent))
}

/// Makes the close of a connection to a local instance, whose whole answer has been read, a
/// reset rather than a FIN: the exchange is over, and the ordinary close would leave a socket
/// in TIME_WAIT for a minute per invocation — ours when we close first, which is the usual
/// order, as the answer wakes us before the instance has closed. At thousands of invocations
/// a second those hold most of the ephemeral ports towards the instance, make every new
/// connection search past them, and cost a handshake to close each. With the answer read to
/// its end no data is lost on either side; an instance still reading after its answer sees
/// the reset as the end of the connection. Only on loopback: across a network a lost reset
/// would leave the peer's half of the connection behind.
fn close_with_reset(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

/// The request line and headers, ending with the blank line.
fn request_head(
    host: &dyn std::fmt::Display,
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &Fields<'_>,
    body_len: usize,
) -> Vec<u8> {
    use std::io::Write as _;
    let mut out = Vec::with_capacity(256 + 64 * headers.len() + body_len.min(COALESCE));
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    if let Some(q) = query {
        out.push(b'?');
        out.extend_from_slice(q.as_bytes());
    }
    // Writing into a Vec cannot fail.
    let _ = write!(out, " HTTP/1.1\r\nhost: {host}\r\n");
    for h in headers.iter().filter(|h| !hop_by_hop(h.name.as_bytes())) {
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value);
        out.extend_from_slice(b"\r\n");
    }
    let _ = write!(
        out,
        "connection: close\r\ncontent-length: {body_len}\r\n\r\n"
    );
    out
}

/// How an answer's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Chunked,
    Length(usize),
    UntilClose,
}

/// Reads an instance's answer from `stream` as [`exchange`] does, without the connection: the
/// parsing of the answer's head and the decoding of its body, for the fuzz targets (`fuzz/`).
#[doc(hidden)]
pub async fn read_answer<S: AsyncRead + Unpin>(
    stream: S,
    head_request: bool,
) -> Result<Answer, ForwardError> {
    let mut reader = Reader {
        stream,
        buf: BytesMut::with_capacity(4096),
    };
    reader.answer(head_request).await
}

/// The answer as it comes off the connection.
struct Reader<S> {
    stream: S,
    buf: BytesMut,
}

impl<S: AsyncRead + Unpin> Reader<S> {
    /// Reads more; `false` at the end of the connection.
    async fn fill(&mut self) -> Result<bool, ForwardError> {
        if self.buf.capacity() - self.buf.len() < 1024 {
            self.buf.reserve(8192);
        }
        let n = self.stream.read_buf(&mut self.buf).await.map_err(broken)?;
        Ok(n > 0)
    }

    /// The answer, with its end-to-end headers only.
    async fn answer(&mut self, head_request: bool) -> Result<Answer, ForwardError> {
        loop {
            let (status, fields, framing) = self.head().await?;
            if (100..200).contains(&status) {
                if status == 101 {
                    return Err(broken("the instance switched protocols"));
                }
                continue; // 100 Continue and the like: the answer follows
            }
            let no_body = head_request || status == 204 || status == 304;
            let body = match framing {
                _ if no_body => Bytes::new(),
                Framing::Chunked => self.chunked().await?,
                Framing::Length(n) => self.exactly(n).await?,
                Framing::UntilClose => {
                    while self.fill().await? {}
                    self.buf.split().freeze()
                }
            };
            return Ok(Answer {
                status,
                fields,
                body,
                connection: None,
            });
        }
    }

    /// The status, the end-to-end header lines and the framing of the body.
    async fn head(&mut self) -> Result<(u16, Vec<u8>, Framing), ForwardError> {
        loop {
            if let Some((len, head)) = parse_head(&self.buf)? {
                self.buf.advance(len);
                return Ok(head);
            }
            if self.buf.len() >= MAX_HEAD {
                return Err(broken("the answer's head is over 64 KiB"));
            }
            if !self.fill().await? {
                return Err(broken("the connection ended before the answer's head"));
            }
        }
    }

    async fn exactly(&mut self, n: usize) -> Result<Bytes, ForwardError> {
        while self.buf.len() < n {
            if !self.fill().await? {
                return Err(broken(format!(
                    "the connection ended {} bytes into a body of {n}",
                    self.buf.len()
                )));
            }
        }
        Ok(self.buf.split_to(n).freeze())
    }

    /// One line without its CRLF.
    async fn line(&mut self) -> Result<Bytes, ForwardError> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = self.buf.split_to(i).freeze();
                self.buf.advance(2);
                return Ok(line);
            }
            if self.buf.len() >= MAX_HEAD {
                return Err(broken("a chunk line is over 64 KiB"));
            }
            if !self.fill().await? {
                return Err(broken("the connection ended inside a chunked body"));
            }
        }
    }

    async fn chunked(&mut self) -> Result<Bytes, ForwardError> {
        let mut body = BytesMut::new();
        loop {
            let line = self.line().await?;
            let size = std::str::from_utf8(&line)
                .ok()
                .and_then(|l| l.split(';').next())
                .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
                .ok_or_else(|| broken("invalid chunk size"))?;
            if size == 0 {
                // Trailers, if any, end with an empty line; they are not passed on.
                while !self.line().await?.is_empty() {}
                return Ok(body.freeze());
            }
            let data = self.exactly(size).await?;
            body.extend_from_slice(&data);
            if !self.line().await?.is_empty() {
                return Err(broken("a chunk is longer than its size"));
            }
        }
    }
}

/// The answer's head at the start of `buf`, when it is all there: its length, and the status,
/// end-to-end header lines and framing of the body. Apart from the reading, so that the
/// header slots take no room in the exchange's future.
#[allow(clippy::type_complexity)] // one use, just above
fn parse_head(buf: &[u8]) -> Result<Option<(usize, (u16, Vec<u8>, Framing))>, ForwardError> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut slots);
    let httparse::Status::Complete(len) = parsed.parse(buf).map_err(broken)? else {
        return Ok(None);
    };
    // The codes `http` takes: three digits, not starting with 0.
    let status = parsed
        .code
        .filter(|c| (100..1000).contains(c))
        .ok_or_else(|| broken("no valid status code"))?;
    let mut fields = Vec::with_capacity(len);
    let mut framing = Framing::UntilClose;
    let mut coded = false;
    for h in parsed.headers.iter() {
        // httparse has checked the name to be a token and the value to hold no control
        // characters: what hyper would pass on.
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"transfer-encoding") {
            // A transfer coding overrides any length; the last one decides, and a body not
            // chunked last runs to the end of the connection.
            coded = true;
            let last = h.value.rsplit(|&b| b == b',').next().unwrap_or_default();
            framing = if last.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                Framing::Chunked
            } else {
                Framing::UntilClose
            };
        } else if name.eq_ignore_ascii_case(b"content-length") && !coded {
            let n = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or_else(|| broken("invalid Content-Length"))?;
            if matches!(framing, Framing::Length(m) if m != n) {
                return Err(broken("conflicting Content-Length headers"));
            }
            framing = Framing::Length(n);
        }
        if !hop_by_hop(name) {
            fields.extend(name.iter().map(u8::to_ascii_lowercase));
            fields.extend_from_slice(b": ");
            fields.extend_from_slice(h.value);
            fields.extend_from_slice(b"\r\n");
        }
    }
    Ok(Some((len, (status, fields, framing))))
}

#[cfg(test)]
#[path = "forward_tests.rs"]
mod tests;
