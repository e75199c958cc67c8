//! One invocation: checks the body against the function's limit, leases an instance (queueing
//! while one starts), forwards the request, retries once on another instance when the first
//! refused it or died holding it, and answers with the function's reply and the
//! `x-synapse-*` headers — recording the invocation in the metrics and for the telemetry loop.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use http_body_util::{BodyExt as _, Full, Limited};
use hyper::{
    Response, StatusCode,
    body::Incoming,
    header::{self, HeaderValue},
    http::request::Parts,
};
use tracing::info;

use super::{
    Answer, Gateway, error,
    forward::{ForwardError, forward},
};
use crate::runtime::{FunctionRuntime, InvocationRecord, LeaseError};

impl Gateway {
    pub(super) async fn invoke(&self, name: &str, head: &Parts, body: Incoming) -> Answer {
        let arrived = Instant::now();
        let Some(&index) = self.by_name.get(name) else {
            return error(
                StatusCode::NOT_FOUND,
                format!("no function named `{name}` on this agent"),
            );
        };
        let Some(f) = self.runtime.function(name) else {
            return error(
                StatusCode::NOT_FOUND,
                format!("no function named `{name}` on this agent"),
            );
        };
        let served = &self.served[index];
        let answer = self
            .invoke_served(name, index, &f, arrived, head, body)
            .await;
        served.series.response(answer.status().as_u16());
        answer
    }

    async fn invoke_served(
        &self,
        name: &str,
        index: usize,
        f: &Arc<FunctionRuntime>,
        arrived: Instant,
        parts: &Parts,
        body: Incoming,
    ) -> Answer {
        let limit = f.spec.max_request_bytes;
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let too_large = || {
            error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "function {name}: the request body is over max_request_bytes ({limit} bytes)"
                ),
            )
        };
        if declared.is_some_and(|n| n > limit) {
            return too_large();
        }
        let body = match Limited::new(body, limit).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => return too_large(),
        };
        if let Some(remote) = &self.remote
            && let Some(answer) = remote
                .invoke(
                    name,
                    &parts.method,
                    &parts.uri,
                    &parts.headers,
                    &body,
                    f.spec.invocation_timeout,
                )
                .await
        {
            return answer;
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
                    let mut r = error(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
                    r.headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
                    return r;
                }
            };
            let queued = arrived.elapsed();
            let result = forward(
                lease.addr,
                &parts.method,
                parts.uri.query(),
                &parts.headers,
                &body,
                f.spec.invocation_timeout,
            )
            .await;
            f.release(&lease);
            match result {
                Ok(response) => {
                    let ok = response.status().is_success();
                    self.record(index, f.id, lease.cold, queued, arrived.elapsed(), ok);
                    let (mut parts, bytes) = response.into_parts();
                    let h = &mut parts.headers;
                    h.insert(
                        "x-synapse-start",
                        HeaderValue::from_static(if lease.cold { "cold" } else { "warm" }),
                    );
                    if let Ok(v) = HeaderValue::from_str(&lease.instance) {
                        h.insert("x-synapse-instance", v);
                    }
                    h.insert(
                        "x-synapse-queue-ms",
                        HeaderValue::from(queued.as_millis() as u64),
                    );
                    return Response::from_parts(parts, Full::new(bytes));
                }
                Err(e @ (ForwardError::Connect(_) | ForwardError::Broken(_))) if !retried => {
                    // The instance refused the invocation or died holding it: once, on another.
                    info!(function = %name, instance = %lease.instance, "instance failed the invocation ({e}); retrying once on another");
                    f.retire(lease.seq);
                    retried = true;
                }
                Err(e) => {
                    self.record(index, f.id, lease.cold, queued, arrived.elapsed(), false);
                    let status = match e {
                        ForwardError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
                        _ => {
                            f.retire(lease.seq);
                            StatusCode::BAD_GATEWAY
                        }
                    };
                    let message =
                        format!("function {name}: instance {} failed: {e}", lease.instance);
                    return error(status, message);
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
