//! What the gateway answers an invocation with, rendered two ways: as a hyper response for the
//! connections hyper serves, and written out by hand on the fast path (`connection.rs`) — the
//! same status line, headers in the same order and the same body as hyper would write, with no
//! `http` types built on the way.

use std::{cell::RefCell, io::Write as _, time::SystemTime};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{
    Response, StatusCode,
    header::{self, HeaderValue},
};

use super::{Answer, error, forward};

/// How an invocation ends.
pub(super) enum Reply {
    /// The function's answer from an instance, with the invocation's `x-synapse-*` headers.
    Served {
        answer: forward::Answer,
        cold: bool,
        instance: String,
        queued_ms: u64,
    },
    /// Another agent's gateway answered (cross-tier forwarding).
    Forwarded(Response<Bytes>),
    /// The gateway's own error: a JSON `{"error": ...}` body.
    Refused {
        status: StatusCode,
        message: String,
        /// Seconds for `Retry-After`.
        retry_after: Option<u64>,
    },
}

/// The headers the gateway sets on a served answer; an instance's own headers of these names
/// are replaced.
const SYNAPSE_HEADERS: [&[u8]; 3] = [
    b"x-synapse-start",
    b"x-synapse-instance",
    b"x-synapse-queue-ms",
];

impl Reply {
    pub fn refused(status: StatusCode, message: String) -> Self {
        Self::Refused {
            status,
            message,
            retry_after: None,
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            Self::Served { answer, .. } => answer.status,
            Self::Forwarded(response) => response.status().as_u16(),
            Self::Refused { status, .. } => status.as_u16(),
        }
    }

    /// As a hyper response.
    pub fn into_answer(self) -> Answer {
        match self {
            Self::Served {
                answer,
                cold,
                instance,
                queued_ms,
            } => {
                let response = match answer.into_response() {
                    Ok(response) => response,
                    // httparse checked every name and value already: not expected.
                    Err(e) => {
                        return error(StatusCode::BAD_GATEWAY, format!("instance {instance}: {e}"));
                    }
                };
                let (mut parts, bytes) = response.into_parts();
                let h = &mut parts.headers;
                h.insert(
                    "x-synapse-start",
                    HeaderValue::from_static(if cold { "cold" } else { "warm" }),
                );
                if let Ok(v) = HeaderValue::from_str(&instance) {
                    h.insert("x-synapse-instance", v);
                }
                h.insert("x-synapse-queue-ms", HeaderValue::from(queued_ms));
                Response::from_parts(parts, Full::new(bytes))
            }
            Self::Forwarded(response) => response.map(Full::new),
            Self::Refused {
                status,
                message,
                retry_after,
            } => {
                let mut r = error(status, message);
                if let Some(seconds) = retry_after {
                    r.headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
                }
                r
            }
        }
    }

    /// Writes the answer's head onto `out` (ending with the blank line) and returns its body;
    /// `close` adds `connection: close`, as hyper does on the last answer of a connection.
    pub fn write_head(&self, out: &mut Vec<u8>, close: bool) -> Bytes {
        let status = self.status();
        status_line(out, status);
        let body = match self {
            Self::Served {
                answer,
                cold,
                instance,
                queued_ms,
            } => {
                for (name, value) in answer.fields() {
                    if !SYNAPSE_HEADERS.contains(&name) {
                        field(out, name, value);
                    }
                }
                let start: &[u8] = if *cold { b"cold" } else { b"warm" };
                field(out, b"x-synapse-start", start);
                if instance.bytes().all(visible) {
                    field(out, b"x-synapse-instance", instance.as_bytes());
                }
                number(out, "x-synapse-queue-ms", *queued_ms);
                answer.body.clone()
            }
            Self::Forwarded(response) => {
                for (name, value) in response.headers() {
                    field(out, name.as_str().as_bytes(), value.as_bytes());
                }
                response.body().clone()
            }
            Self::Refused {
                message,
                retry_after,
                ..
            } => {
                field(out, b"content-type", b"application/json");
                if let Some(seconds) = retry_after {
                    number(out, "retry-after", *seconds);
                }
                Bytes::from(serde_json::json!({ "error": message }).to_string())
            }
        };
        if close {
            field(out, b"connection", b"close");
        }
        // No length on the answers that have no body, as hyper.
        if !(status == 204 || status == 304 || (100..200).contains(&status)) {
            number(out, "content-length", body.len() as u64);
        }
        DATE.with_borrow(|date| field(out, b"date", date.as_bytes()));
        out.extend_from_slice(b"\r\n");
        body
    }
}

/// Whether `b` may stand in a header value as `HeaderValue::from_str` takes it.
fn visible(b: u8) -> bool {
    b == b'\t' || (32..127).contains(&b)
}

fn status_line(out: &mut Vec<u8>, status: u16) {
    if status == 200 {
        out.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        return;
    }
    let reason = StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("<none>");
    // Writing into a Vec cannot fail.
    let _ = write!(out, "HTTP/1.1 {status} {reason}\r\n");
}

fn number(out: &mut Vec<u8>, name: &str, n: u64) {
    let _ = write!(out, "{name}: {n}\r\n");
}

fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

thread_local! {
    /// This thread's `Date` value: refreshed by the thread's flush tick, so that no answer
    /// reads the clock or formats a date.
    static DATE: RefCell<String> = RefCell::new(httpdate::fmt_http_date(SystemTime::now()));
}

/// Renews this thread's `Date` value.
pub(super) fn refresh_date() {
    DATE.set(httpdate::fmt_http_date(SystemTime::now()));
}

#[cfg(test)]
#[path = "reply_tests.rs"]
mod tests;
