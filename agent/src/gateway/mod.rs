//! The invocation gateway: `POST /v1/functions/{name}/invoke` passes the body and headers to
//! an instance of the function and returns its answer, with headers telling whether the
//! invocation was warm or cold, which instance served it and how long it queued.
//!
//! Answers of its own: 404 for an unknown function, 413 for a body over the function's
//! `max_request_bytes`, 503 with `Retry-After` when the queue is full or no instance became
//! ready in time, 502 when the instance failed (the invocation of an instance that refused it
//! or died holding it is retried once on another instance first), 504 past the invocation
//! timeout.

pub mod forward;
pub mod remote;

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use axum::{
    Json, Router,
    body::Body,
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use tokio::sync::{mpsc, watch};
use tracing::info;

use self::forward::{ForwardError, forward};
use crate::{
    metrics::{CodeLabel, Metrics, StartLabel},
    runtime::{FunctionRuntime, InvocationRecord, LeaseError, Runtime},
};

#[derive(Clone)]
struct Gateway {
    runtime: Runtime,
    metrics: Arc<Metrics>,
    records: mpsc::Sender<InvocationRecord>,
    /// Cross-tier forwarding of functions placement keeps warm elsewhere.
    remote: Option<Arc<remote::Remote>>,
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

impl Gateway {
    fn answer(&self, f: &FunctionRuntime, response: Response) -> Response {
        let l = CodeLabel {
            function: f.spec.name.clone(),
            code: response.status().as_u16().to_string(),
        };
        self.metrics.gateway_responses.get_or_create(&l).inc();
        response
    }

    fn record(
        &self,
        f: &FunctionRuntime,
        cold: bool,
        queue: Duration,
        latency: Duration,
        ok: bool,
    ) {
        let name = f.spec.name.clone();
        let start = if cold { "cold" } else { "warm" };
        let l = Metrics::label(&name);
        self.metrics
            .invocations
            .get_or_create(&StartLabel {
                function: name,
                start: start.into(),
            })
            .inc();
        self.metrics
            .invocation_seconds
            .get_or_create(&l)
            .observe(latency.as_secs_f64());
        self.metrics
            .queue_seconds
            .get_or_create(&l)
            .observe(queue.as_secs_f64());
        let record = InvocationRecord {
            function_id: f.id,
            cold,
            queue_s: queue.as_secs_f64(),
            latency_s: latency.as_secs_f64(),
            ok,
        };
        if self.records.try_send(record).is_err() {
            self.metrics.invocation_records_dropped.inc();
        }
    }
}

async fn invoke(
    State(gw): State<Gateway>,
    Path(name): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let arrived = Instant::now();
    let Some(f) = gw.runtime.function(&name) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no function named `{name}` on this agent"),
        );
    };
    let limit = f.spec.max_request_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("function {name}: the request body is over max_request_bytes ({limit} bytes)"),
        )
    };
    if declared.is_some_and(|n| n > limit) {
        return gw.answer(&f, too_large());
    }
    let Ok(body) = axum::body::to_bytes(body, limit).await else {
        return gw.answer(&f, too_large());
    };
    if let Some(remote) = &gw.remote
        && let Some(answer) = remote
            .invoke(
                &name,
                &method,
                &uri,
                &headers,
                &body,
                f.spec.invocation_timeout,
            )
            .await
    {
        return gw.answer(&f, answer);
    }
    let path = uri
        .query()
        .map_or_else(|| "/".to_string(), |q| format!("/?{q}"));
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
                return gw.answer(&f, r);
            }
        };
        let queued = arrived.elapsed();
        let started = Instant::now();
        let result = forward(
            lease.addr,
            method.clone(),
            &path,
            headers.clone(),
            body.clone(),
            f.spec.invocation_timeout,
        )
        .await;
        f.release(&lease, started.elapsed());
        match result {
            Ok(response) => {
                gw.record(
                    &f,
                    lease.cold,
                    queued,
                    arrived.elapsed(),
                    response.status().is_success(),
                );
                let (mut parts, bytes) = response.into_parts();
                forward::strip_hop_by_hop(&mut parts.headers);
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
                return gw.answer(&f, Response::from_parts(parts, Body::from(bytes)));
            }
            Err(e @ (ForwardError::Connect(_) | ForwardError::Broken(_))) if !retried => {
                // The instance refused the invocation or died holding it: once, on another.
                info!(function = %name, instance = %lease.instance, "instance failed the invocation ({e}); retrying once on another");
                f.retire(lease.seq);
                retried = true;
            }
            Err(e) => {
                gw.record(&f, lease.cold, queued, arrived.elapsed(), false);
                let status = match e {
                    ForwardError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
                    _ => {
                        f.retire(lease.seq);
                        StatusCode::BAD_GATEWAY
                    }
                };
                let message = format!("function {name}: instance {} failed: {e}", lease.instance);
                return gw.answer(&f, error(status, message));
            }
        }
    }
}

async fn list(State(gw): State<Gateway>) -> Response {
    let functions: Vec<serde_json::Value> = gw
        .runtime
        .functions()
        .map(|f| {
            let instances: Vec<serde_json::Value> = f
                .snapshot()
                .into_iter()
                .map(|(name, state, addr, in_flight)| {
                    serde_json::json!({
                        "name": name,
                        "state": format!("{state:?}").to_lowercase(),
                        "addr": addr.map(|a| a.to_string()),
                        "in_flight": in_flight,
                    })
                })
                .collect();
            serde_json::json!({ "name": f.spec.name, "version": f.spec.version, "instances": instances })
        })
        .collect();
    Json(functions).into_response()
}

/// Binds the gateway's address, so that the agent listens before it tells systemd it is ready.
pub async fn bind(listen: SocketAddr) -> Result<tokio::net::TcpListener> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding the gateway on {listen} (gateway.listen)"))?;
    info!(%listen, "gateway listening");
    Ok(listener)
}

/// Serves the gateway on a listener from [`bind`] until `shutdown` turns true.
pub async fn serve(
    listener: tokio::net::TcpListener,
    runtime: Runtime,
    metrics: Arc<Metrics>,
    records: mpsc::Sender<InvocationRecord>,
    shutdown: watch::Receiver<bool>,
) -> Result<()> {
    serve_with_remote(listener, runtime, metrics, records, None, shutdown).await
}

/// Serves the gateway on a listener from [`bind`], forwarding as `remote` routes, until
/// `shutdown` turns true.
pub async fn serve_with_remote(
    listener: tokio::net::TcpListener,
    runtime: Runtime,
    metrics: Arc<Metrics>,
    records: mpsc::Sender<InvocationRecord>,
    remote: Option<Arc<remote::Remote>>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let app = Router::new()
        .route("/v1/functions/{name}/invoke", post(invoke))
        .route("/v1/functions", get(list))
        .with_state(Gateway {
            runtime,
            metrics,
            records,
            remote,
        });
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { crate::shutdown::stopped(&mut shutdown).await })
        .await
        .context("gateway")
}
