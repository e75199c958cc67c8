//! One invocation: checks the body against the function's limit, leases an instance (queueing
//! while one starts), forwards the request, retries once on another instance when the first
//! refused it or died holding it, and answers with the function's reply and the
//! `x-synapse-*` headers — recording the invocation in the metrics and for the telemetry loop.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use hyper::{Method, StatusCode, body::Incoming, header, http::request::Parts};
use tokio::net::TcpStream;
use tracing::info;

use super::{
    Answer, Gateway, error,
    forward::{self, Fields, ForwardError},
    reply::Reply,
    request::{self, BodyError},
};
use crate::runtime::{FunctionRuntime, InvocationRecord, LeaseError, pool::Lease};

impl Gateway {
    /// The function named `name`: where it is among the served, and its runtime now.
    pub(super) fn function(&self, name: &str) -> Option<(usize, Arc<FunctionRuntime>)> {
        let &index = self.by_name.get(name)?;
        Some((index, self.runtime.function(name)?))
    }

    /// An invocation the hyper path serves (`mod.rs`): the fast path (`connection.rs`) hands
    /// it the requests it does not take, such as those with a chunked body.
    pub(super) async fn invoke(&self, name: &str, head: &Parts, body: Incoming) -> Answer {
        let arrived = Instant::now();
        let Some((index, f)) = self.function(name) else {
            return error(
                StatusCode::NOT_FOUND,
                format!("no function named `{name}` on this agent"),
            );
        };
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
                let fields = forward::fields_of(&head.headers);
                self.invoke_served(name, index, &f, arrived, head.uri.query(), &fields, &body)
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

    /// Forwards an invocation whose body is read (and within the limit) to an instance, with
    /// one retry on another, and records it. The caller counts the reply's status.
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
        if let Some(remote) = &self.remote
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
