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
mod series;

use std::{
    collections::HashMap,
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

use self::{
    forward::{ForwardError, forward},
    series::FunctionSeries,
};
use crate::{
    metrics::Metrics,
    runtime::{FunctionRuntime, InvocationRecord, LeaseError, Runtime},
};

/// A function behind the gateway and the metric series of its invocations.
struct Served {
    runtime: Arc<FunctionRuntime>,
    series: FunctionSeries,
}

#[derive(Clone)]
struct Gateway {
    runtime: Runtime,
    functions: Arc<HashMap<String, Served>>,
    metrics: Arc<Metrics>,
    records: mpsc::Sender<InvocationRecord>,
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

impl Gateway {
    fn answer(&self, f: &Served, response: Response) -> Response {
        f.series.response(response.status().as_u16());
        response
    }

    fn record(&self, f: &Served, cold: bool, queue: Duration, latency: Duration, ok: bool) {
        f.series.invocation(cold).inc();
        f.series.latency().observe(latency.as_secs_f64());
        f.series.queue().observe(queue.as_secs_f64());
        let record = InvocationRecord {
            function_id: f.runtime.id,
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
    let Some(served) = gw.functions.get(&name) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no function named `{name}` on this agent"),
        );
    };
    let f = &served.runtime;
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
        return gw.answer(served, too_large());
    }
    let Ok(body) = axum::body::to_bytes(body, limit).await else {
        return gw.answer(served, too_large());
    };
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
                return gw.answer(served, r);
            }
        };
        let queued = arrived.elapsed();
        let result = forward(
            lease.addr,
            method.clone(),
            &path,
            headers.clone(),
            body.clone(),
            f.spec.invocation_timeout,
        )
        .await;
        f.release(&lease);
        match result {
            Ok(response) => {
                gw.record(
                    served,
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
                return gw.answer(served, Response::from_parts(parts, Body::from(bytes)));
            }
            Err(e @ (ForwardError::Connect(_) | ForwardError::Broken(_))) if !retried => {
                // The instance refused the invocation or died holding it: once, on another.
                info!(function = %name, instance = %lease.instance, "instance failed the invocation ({e}); retrying once on another");
                f.retire(lease.seq);
                retried = true;
            }
            Err(e) => {
                gw.record(served, lease.cold, queued, arrived.elapsed(), false);
                let status = match e {
                    ForwardError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
                    _ => {
                        f.retire(lease.seq);
                        StatusCode::BAD_GATEWAY
                    }
                };
                let message = format!("function {name}: instance {} failed: {e}", lease.instance);
                return gw.answer(served, error(status, message));
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

/// Serves the gateway until `shutdown` turns true.
pub async fn serve(
    listen: SocketAddr,
    runtime: Runtime,
    metrics: Arc<Metrics>,
    records: mpsc::Sender<InvocationRecord>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let functions = runtime
        .functions()
        .map(|f| {
            let served = Served {
                runtime: f.clone(),
                series: FunctionSeries::new(&f.spec.name, metrics.clone()),
            };
            (f.spec.name.clone(), served)
        })
        .collect();
    let app = Router::new()
        .route("/v1/functions/{name}/invoke", post(invoke))
        .route("/v1/functions", get(list))
        .with_state(Gateway {
            runtime,
            functions: Arc::new(functions),
            metrics,
            records,
        });
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding the gateway on {listen} (gateway.listen)"))?;
    info!(%listen, "gateway listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { crate::shutdown::stopped(&mut shutdown).await })
        .await
        .context("gateway")
}
