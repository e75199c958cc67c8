//! Fuzz target: the gateway's reading of an instance's answer
//! (`synapse_agent::gateway::forward::read_answer`, agent/src/gateway/forward.rs): the head
//! parsed with httparse, the body framed by `Content-Length`, `Transfer-Encoding: chunked`
//! (decoded there) or the end of the connection, interim 1xx answers skipped. The bytes arrive
//! in pieces of a size the input chooses, as reads off a socket do.
//!
//! Two modes, by the input's first byte:
//! - raw bytes as the answer: no panic; an answer read is a final one (status 200..=999) whose
//!   header lines are well formed and end to end, whose body is no longer than the input, and
//!   which converts to an `http` response or is refused with an error;
//! - a chunked answer built from the input (body, chunk sizes, chunk extensions, trailers):
//!   it reads back as exactly that body, however it is cut into reads.

#![no_main]

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, Waker},
};

use libfuzzer_sys::fuzz_target;
use synapse_agent::gateway::forward::{Answer, ForwardError, read_answer};
use tokio::io::{AsyncRead, ReadBuf};

/// Fields of one hop (RFC 9110, 7.6.1, and the framing ones), never passed on.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
    "host",
    "content-length",
    "keep-alive",
];

/// The input as a stream that hands out at most `piece` bytes a read, always at once.
struct Pieces<'a> {
    data: &'a [u8],
    piece: usize,
}

impl AsyncRead for Pieces<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = self.piece.min(self.data.len()).min(buf.remaining());
        let (now, rest) = self.data.split_at(n);
        buf.put_slice(now);
        self.data = rest;
        Poll::Ready(Ok(()))
    }
}

/// Runs a future that never waits (its stream is always ready) to its end.
fn ready<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("reading an answer from a ready stream waited"),
    }
}

fn read(data: &[u8], piece: usize, head_request: bool) -> Result<Answer, ForwardError> {
    ready(read_answer(Pieces { data, piece }, head_request))
}

fuzz_target!(|input: &[u8]| {
    let Some((&control, data)) = input.split_first() else {
        return;
    };
    // Pieces of 1 to 64 bytes, or the whole input in one read.
    let piece = match control & 0x3f {
        0 => usize::MAX,
        n => n as usize,
    };
    if control & 0x80 == 0 {
        raw(data, piece, control & 0x40 != 0);
    } else {
        chunked(data, piece);
    }
});

fn raw(data: &[u8], piece: usize, head_request: bool) {
    let Ok(answer) = read(data, piece, head_request) else {
        return;
    };
    assert!((200..1000).contains(&answer.status), "{}", answer.status);
    assert!(answer.body.len() <= data.len());
    if head_request || answer.status == 204 || answer.status == 304 {
        assert!(answer.body.is_empty());
    }
    let lines = answer
        .fields
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty());
    let mut count = 0;
    for line in lines {
        let line = line
            .strip_suffix(b"\r")
            .expect("a field line ends with CRLF");
        let colon = line.iter().position(|&b| b == b':').expect("name: value");
        let name = &line[..colon];
        assert!(!name.is_empty());
        assert!(
            !name.iter().any(u8::is_ascii_uppercase),
            "names are lower case"
        );
        assert!(
            !HOP_BY_HOP.iter().any(|h| h.as_bytes() == name),
            "hop-by-hop field passed on"
        );
        count += 1;
    }
    assert_eq!(answer.fields().count(), count);
    let _ = answer.into_response();
}

fn chunked(data: &[u8], piece: usize) {
    // Body bytes and the sizes its chunks are cut in, from the input.
    let Some((&cuts, data)) = data.split_first() else {
        return;
    };
    let body = data;
    let mut wire = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nx-a: 1\r\n\r\n".to_vec();
    let mut rest = body;
    let mut k = 0usize;
    while !rest.is_empty() {
        // Sizes from 1 to 16 bytes, cycling through the seed byte's bits.
        let size = (1 + ((cuts as usize).rotate_left(k as u32 % 8) & 0x0f)).min(rest.len());
        let (chunk, next) = rest.split_at(size);
        if k % 3 == 1 {
            wire.extend_from_slice(format!("{size:X};ext=\"v\"\r\n").as_bytes());
        } else {
            wire.extend_from_slice(format!("{size:x}\r\n").as_bytes());
        }
        wire.extend_from_slice(chunk);
        wire.extend_from_slice(b"\r\n");
        rest = next;
        k += 1;
    }
    wire.extend_from_slice(b"0\r\n");
    if cuts & 1 == 1 {
        wire.extend_from_slice(b"x-trailer: t\r\n");
    }
    wire.extend_from_slice(b"\r\n");
    let answer = read(&wire, piece, false).expect("a well-formed chunked answer reads");
    assert_eq!(answer.status, 200);
    assert_eq!(&answer.body[..], body);
    assert_eq!(&answer.fields[..], b"x-a: 1\r\n");
}
