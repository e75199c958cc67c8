//! One invocation: checks the client's bearer token (`auth.rs`) and the body against the
//! function's limit, leases an instance (queueing while one starts), forwards the request,
//! retries once on another instance when the first refused it or died holding it, and
//! answers with the function's reply and the `x-synapse-*` headers — recording the invocation
//! in the metrics and for the telemetry loop.
//!
//! Who called decides where the invocation may go ([`Caller`]): a client of the public
//! listener's may be forwarded to another tier, and an `x-synapse-forwarded-by` header it
//! sent is dropped (it cannot pose as an agent, nor keep its invocation from being forwarded
//! or counted as demand); one from another agent on the peer listener is served here, marked
//! `x-synapse-forwarded-by` with the name of the certificate it came with.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use http_body_util::Full;
use hyper::{Method, StatusCode, body::Incoming, header, http::request::Parts};
use tokio::net::TcpStream;
use tracing::info;

use super::{
    Answer, Gateway,
    auth::{self, Verdict},
    error,
    forward::{self, Fields, ForwardError},
    remote::FORWARDED_BY,
    reply::Reply,
    request::{self, BodyError},
};
use crate::runtime::{FunctionRuntime, InvocationRecord, LeaseError, pool::Lease};

/// Where an invocation comes from.
#[derive(Debug, Clone, Copy)]
pub(super) enum Caller<'a> {
    /// A client of the public listener.
    Client,
    /// Another agent's gateway on the peer listener, by its verified certificate's name.
    Peer(&'a str),
}

fn is_forwarded_by(h: &httparse::Header<'_>) -> bool {
    h.name.eq_ignore_ascii_case(FORWARDED_BY)
}

/// The headers an invocation from `caller` is passed on with, when not `headers` as they are:
/// whom it was forwarded by is the peer link's to say, never a header's.
fn passed_on<'a>(
    caller: Caller<'a>,
    headers: &[httparse::Header<'a>],
) -> Option<Vec<httparse::Header<'a>>> {
    let others = headers.iter().filter(|h| !is_forwarded_by(h)).copied();
    match caller {
        Caller::Client if !headers.iter().any(is_forwarded_by) => None,
        Caller::Client => Some(others.collect()),
        Caller::Peer(peer) => Some(
            others
                .chain([httparse::Header {
                    name: FORWARDED_BY,
                    value: peer.as_bytes(),
                }])
                .collect(),
        ),
    }
}

impl Gateway {
    /// The function named `name`: where it is among the served, and its runtime now.
    pub(super) fn function(&self, name: &str) -> Option<(usize, Arc<FunctionRuntime>)> {
        let &index = self.by_name.get(name)?;
        Some((index, self.runtime.function(name)?))
    }

    /// Whether a request for the function at `index` with these headers may go on: the
    /// function is open, or its bearer token came with it. Read on the request's head alone.
    pub(super) fn authorized(&self, index: usize, headers: &Fields<'_>) -> bool {
        self.tokens.open(index) || self.verdict(index, headers) == Verdict::Allowed
    }

    fn verdict(&self, index: usize, headers: &Fields<'_>) -> Verdict {
        let authorization = headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("authorization"))
            .map(|h| h.value);
        self.tokens.verdict(index, authorization)
    }

    /// An invocation the hyper path serves (`mod.rs`): the fast path (`connection.rs`) hands
    /// it the requests it does not take, such as those with a chunked body.
    pub(super) async fn invoke(&self, name: &str, head: &Parts, body: Incoming) -> Answer {
        self.invoke_via(name, head, body, Caller::Client).await
    }

    /// An invocation on hyper's path from `caller`: the token is checked before the body is
    /// read.
    pub(super) async fn invoke_via(
        &self,
        name: &str,
        head: &Parts,
        body: Incoming,
        caller: Caller<'_>,
    ) -> Answer {
        let arrived = Instant::now();
        let Some((index, f)) = self.function(name) else {
            return error(
                StatusCode::NOT_FOUND,
                format!("no function named `{name}` on this agent"),
            );
        };
        let fields = forward::fields_of(&head.headers);
        if let Some(refused) = auth::refusal(self.verdict(index, &fields), name) {
            self.served[index]
                .series
                .response(refused.status().as_u16());
            return refused.map(Full::new);
        }
        let limit = f.spec.max_request_bytes;
        let declared = head
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let body = if declared.is_some_and(|n| n > limit) {
            Err(BodyError::TooLarge)
        } else {
            request::collect(body, limit, self.pace).await
        };
        let reply = match body {
            Ok(body) => {
                self.invoke_as(
                    name,
                    index,
                    &f,
                    arrived,
                    head.uri.query(),
                    &fields,
                    &body,
                    caller,
                )
                .await
            }
            Err(BodyError::TooLarge) => too_large(name, limit),
            Err(BodyError::Late) => {
                self.served[index].series.response(408);
                let mut answer = late().into_answer();
                answer.headers_mut().insert(
                    header::CONNECTION,
                    header::HeaderValue::from_static("close"),
                );
                return answer;
            }
            // The client is gone: whatever is answered is not read.
            Err(BodyError::Broken) => Reply::refused(
                StatusCode::BAD_REQUEST,
                "the request body was cut off".into(),
            ),
        };
        self.served[index].series.response(reply.status());
        reply.into_answer()
    }

    /// An invocation of the public listener's fast path whose body is read (and within the
    /// limit); the caller counts the reply's status. The token is checked here too (the fast
    /// path hands requests [`Gateway::authorized`] refuses to hyper, before their body), so
    /// that no way in skips it.
    #[allow(clippy::too_many_arguments)] // the invocation's parts, borrowed as they lie
    pub(super) async fn invoke_served(
        &self,
        name: &str,
        index: usize,
        f: &Arc<FunctionRuntime>,
        arrived: Instant,
        query: Option<&str>,
        headers: &Fields<'_>,
        body: &[u8],
    ) -> Reply {
        if !self.tokens.open(index)
            && let Some(refused) = auth::refusal(self.verdict(index, headers), name)
        {
            // A whole answer made here, written out as a forwarded one is.
            return Reply::Forwarded(refused);
        }
        self.invoke_as(
            name,
            index,
            f,
            arrived,
            query,
            headers,
            body,
            Caller::Client,
        )
        .await
    }

    /// Forwards an invocation from `caller` whose body is read (and within the limit) to an
    /// instance, with one retry on another, and records it — or, from a client, to another
    /// tier as placement routes it. The caller counts the reply's status.
    #[allow(clippy::too_many_arguments)] // the invocation's parts, borrowed as they lie
    async fn invoke_as(
        &self,
        name: &str,
        index: usize,
        f: &Arc<FunctionRuntime>,
        arrived: Instant,
        query: Option<&str>,
        headers: &Fields<'_>,
        body: &[u8],
        caller: Caller<'_>,
    ) -> Reply {
        let rewritten = passed_on(caller, headers);
        let headers = rewritten.as_deref().unwrap_or(headers);
        if let Caller::Client = caller
            && let Some(remote) = &self.remote
            && let Some(answer) = remote
                .invoke_fields(
                    name,
                    &Method::POST,
                    query,
                    headers,
                    body,
                    f.spec.invocation_timeout,
                )
                .await
        {
            return Reply::Forwarded(answer);
        }
        let mut retried = false;
        loop {
            let lease = match f.lease(arrived).await {
                Ok(lease) => lease,
                Err(e) => {
                    let retry_after = match &e {
                        LeaseError::QueueFull { .. } => 1,
                        _ => f.spec.queue_timeout.as_secs().max(1),
                    };
                    return Reply::Refused {
                        status: StatusCode::SERVICE_UNAVAILABLE,
                        message: e.to_string(),
                        retry_after: Some(retry_after),
                    };
                }
            };
            let queued = arrived.elapsed();
            let result = forward::exchange(
                lease.addr,
                &Method::POST,
                "/",
                query,
                headers,
                body,
                f.spec.invocation_timeout,
            )
            .await;
            f.release(&lease);
            match result {
                Ok(answer) => {
                    let ok = (200..300).contains(&answer.status);
                    self.record(index, f.id, lease.cold, queued, arrived.elapsed(), ok);
                    return Reply::Served {
                        answer,
                        cold: lease.cold,
                        instance: lease.instance,
                        queued_ms: queued.as_millis() as u64,
                    };
                }
                Err(e @ (ForwardError::Connect(_) | ForwardError::Broken(_))) if !retried => {
                    // The instance refused the invocation or broke it off: once, on another.
                    info!(function = %name, instance = %lease.instance, "instance failed the invocation ({e}); retrying once on another");
                    blame(f, &lease, &e).await;
                    retried = true;
                }
                Err(e) => {
                    self.record(index, f.id, lease.cold, queued, arrived.elapsed(), false);
                    let status = match e {
                        ForwardError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
                        _ => {
                            blame(f, &lease, &e).await;
                            StatusCode::BAD_GATEWAY
                        }
                    };
                    let message =
                        format!("function {name}: instance {} failed: {e}", lease.instance);
                    return Reply::refused(status, message);
                }
            }
        }
    }

    /// Counts the invocation at once; its latencies and record follow with the thread's
    /// next flush (`records.rs`).
    fn record(
        &self,
        index: usize,
        function_id: u32,
        cold: bool,
        queue: Duration,
        latency: Duration,
        ok: bool,
    ) {
        let f = &self.served[index];
        f.series.invocation(cold).inc();
        self.records.push(
            index,
            InvocationRecord {
                function_id,
                cold,
                queue_s: queue.as_secs_f64(),
                latency_s: latency.as_secs_f64(),
                ok,
            },
        );
    }
}

/// Retires the leased instance after `e` when nothing listens on it any more: it refused
/// the connection, or it broke the exchange off and is going ([`gone`]) — a crash. One that
/// broke an exchange off but is serving still is left in service: the break may come of the
/// request — a header it could not read, a body it would not take — and no client may take a
/// healthy instance out of service that way. Nor may the agent's own trouble (out of file
/// descriptors) retire it.
async fn blame(f: &FunctionRuntime, lease: &Lease, e: &ForwardError) {
    let gone = match e {
        ForwardError::Connect(e) => e.kind() == std::io::ErrorKind::ConnectionRefused,
        ForwardError::Broken(_) => gone(lease.addr).await,
        ForwardError::Timeout(_) => false,
    };
    if gone {
        f.retire(lease.seq);
    }
}

/// Whether the instance at `addr` is going: its listener refuses a new connection, or resets
/// it at once. A process that dies closes the connection it broke off before its listener,
/// which resets the connections waiting on it as it closes; a live instance holds a
/// connection open, waiting for its request, and the probe is closed after a short look.
async fn gone(addr: std::net::SocketAddr) -> bool {
    use tokio::io::AsyncReadExt as _;
    // Loopback answers at once: the bounds only keep a stuck probe from holding the answer.
    let probe = tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(addr)).await;
    let mut probe = match probe {
        Ok(Ok(probe)) => probe,
        Ok(Err(e)) => return e.kind() == std::io::ErrorKind::ConnectionRefused,
        Err(_) => return false,
    };
    let read = tokio::time::timeout(Duration::from_millis(100), probe.read(&mut [0u8; 1])).await;
    matches!(read, Ok(Ok(0) | Err(_)))
}

/// The answer to a body that came too slowly; its connection is closed after it.
pub(super) fn late() -> Reply {
    Reply::refused(
        StatusCode::REQUEST_TIMEOUT,
        "the request body came too slowly (gateway.body_idle_timeout, gateway.body_min_rate)"
            .into(),
    )
}

/// The answer to a body over the function's `max_request_bytes`.
pub(super) fn too_large(name: &str, limit: usize) -> Reply {
    Reply::refused(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("function {name}: the request body is over max_request_bytes ({limit} bytes)"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header<'a>(name: &'a str, value: &'a str) -> httparse::Header<'a> {
        httparse::Header {
            name,
            value: value.as_bytes(),
        }
    }

    fn names(headers: &[httparse::Header<'_>]) -> Vec<String> {
        headers
            .iter()
            .map(|h| format!("{}={}", h.name, String::from_utf8_lossy(h.value)))
            .collect()
    }

    #[test]
    fn a_clients_forwarded_by_is_dropped_and_a_peers_comes_from_its_certificate() {
        let plain = [header("content-type", "text/plain")];
        assert!(
            passed_on(Caller::Client, &plain).is_none(),
            "nothing to drop"
        );
        let spoofed = [
            header("X-Synapse-Forwarded-By", "cloud-1"),
            header("content-type", "text/plain"),
        ];
        assert_eq!(
            names(&passed_on(Caller::Client, &spoofed).unwrap()),
            ["content-type=text/plain"]
        );
        assert_eq!(
            names(&passed_on(Caller::Peer("edge-1"), &spoofed).unwrap()),
            ["content-type=text/plain", "x-synapse-forwarded-by=edge-1"]
        );
    }
}
