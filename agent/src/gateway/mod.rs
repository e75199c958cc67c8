//! The invocation gateway: `POST /v1/functions/{name}/invoke` passes the body and headers to
//! an instance of the function and returns its answer, with headers telling whether the
//! invocation was warm or cold, which instance served it and how long it queued;
//! `GET /v1/functions` lists the pools.
//!
//! Answers of its own: 404 for an unknown function, 413 for a body over the function's
//! `max_request_bytes`, 408 (closing the connection) for a body that comes too slowly, 503 with `Retry-After` when the queue is full or no instance became
//! ready in time, 502 when the instance failed (the invocation of an instance that refused it
//! or died holding it is retried once on another instance first), 504 past the invocation
//! timeout.
//!
//! It sits on every invocation's path, so it is lean: its own threads (`server.rs`), each
//! serving its connections on a fast path for plain invocations (`connection.rs`: the head
//! parsed in place with httparse, `request.rs`; the answer written by hand, `reply.rs`) and
//! with hyper's HTTP/1.1 server, without a router in between, for everything else; the
//! exchange with the instance done by hand too (`forward.rs`); metric series resolved once
//! per function (`series.rs`) and invocation records handed to the telemetry loop in batches
//! (`records.rs`).
//!
//! Functions listed in `[gateway.tokens]` take bearer tokens (`auth.rs`). Other agents
//! forward invocations to the peer listener, over mutual TLS (`peer/`), never to this one.

pub mod auth;
mod connection;
pub mod forward;
mod invoke;
mod loads;
pub mod peer;
mod records;
pub mod remote;
mod reply;
mod request;
mod series;
mod server;

#[doc(hidden)]
pub use request::{FastPathHead, parse_head};

use std::{
    collections::{BTreeMap, HashMap},
    net::{SocketAddr, TcpListener as StdListener},
    sync::Arc,
    thread::JoinHandle,
    time::Duration,
};

use anyhow::{Context as _, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::{
    Method, Request, Response, StatusCode,
    body::Incoming,
    header::{self, HeaderValue},
};
use tokio::sync::{mpsc, watch};
use tracing::info;

pub use self::server::Limits;
use self::{records::RecordSink, request::BodyPace, series::FunctionSeries};
use crate::{
    metrics::Metrics,
    runtime::{InvocationRecord, Runtime},
};

/// A function behind the gateway: the metric series of its invocations. Its runtime is looked
/// up for every invocation, since a rollout may have swapped in a new version.
#[derive(Clone)]
struct Served {
    series: FunctionSeries,
}

/// What a gateway thread serves with. Every thread has its own copy (the functions and metric
/// series in it are shared), so the reference counts it takes per request stay on its core.
#[derive(Clone)]
struct Gateway {
    runtime: Runtime,
    /// Every function, and where each name is in it.
    served: Vec<Served>,
    by_name: HashMap<String, usize>,
    records: RecordSink,
    /// Cross-tier forwarding of functions placement keeps warm elsewhere.
    remote: Option<Arc<remote::Remote>>,
    /// How long a client may take to send a request's head.
    header_read_timeout: Duration,
    /// How slowly a client may send a request's body.
    pace: BodyPace,
    /// The bearer tokens of every function (by its index in `served`).
    tokens: Arc<auth::Tokens>,
}

/// Who may use the gateway: `[gateway.tokens]`, and the peer listener for other agents.
#[derive(Default)]
pub struct Access {
    /// Per function, the SHA-256 digests (hex) of its bearer tokens; others are open.
    pub tokens: BTreeMap<String, Vec<String>>,
    /// The peer listener (`[gateway] peer_listen`), bound.
    pub peer: Option<peer::PeerListener>,
}

type Answer = Response<Full<Bytes>>;

fn json(status: StatusCode, value: &serde_json::Value) -> Answer {
    let mut r = Response::new(Full::new(Bytes::from(value.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn error(status: StatusCode, message: String) -> Answer {
    json(status, &serde_json::json!({ "error": message }))
}

fn method_not_allowed(allow: &'static str) -> Answer {
    let mut r = error(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("this path takes {allow} only"),
    );
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}

impl Gateway {
    async fn handle(&self, request: Request<Incoming>) -> Answer {
        // The name is read in place from the request's head, which the invocation keeps:
        // nothing is copied out of it on the way.
        let (head, body) = request.into_parts();
        let path = head.uri.path();
        if let Some(name) = path
            .strip_prefix("/v1/functions/")
            .and_then(|rest| rest.strip_suffix("/invoke"))
        {
            if head.method != Method::POST {
                return method_not_allowed("POST");
            }
            return self.invoke(name, &head, body).await;
        }
        if path == "/v1/functions" {
            if head.method != Method::GET {
                return method_not_allowed("GET");
            }
            return self.list();
        }
        error(
            StatusCode::NOT_FOUND,
            format!("no such path: {path} (POST /v1/functions/NAME/invoke, GET /v1/functions)"),
        )
    }

    fn list(&self) -> Answer {
        let functions: Vec<serde_json::Value> = self
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
        json(StatusCode::OK, &serde_json::Value::Array(functions))
    }
}

/// Binds the gateway's address, so that the agent listens before it tells systemd it is ready.
pub fn bind(listen: SocketAddr) -> Result<StdListener> {
    server::bind(listen)
        .with_context(|| format!("binding the gateway on {listen} (gateway.listen)"))
}

/// Serves the gateway on `listen` with `threads` threads (0: one per CPU) until `shutdown`
/// turns true.
pub async fn serve(
    listen: SocketAddr,
    threads: usize,
    runtime: Runtime,
    metrics: Arc<Metrics>,
    records: mpsc::Sender<InvocationRecord>,
    shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let listener = bind(listen)?;
    serve_with_remote(
        listener,
        threads,
        HEADER_READ_TIMEOUT,
        Limits::default(),
        runtime,
        metrics,
        records,
        None,
        Access::default(),
        shutdown,
    )
    .await
}

/// Serves the gateway on a listener from [`bind`] with `threads` threads (0: one per CPU),
/// closing connections whose request head takes longer than `header_read_timeout` or
/// whose clients go past `limits`, forwarding as `remote` routes and serving as `access`
/// says, until `shutdown` turns true.
#[allow(clippy::too_many_arguments)] // the gateway's settings and the agent's parts it uses
pub async fn serve_with_remote(
    listener: StdListener,
    threads: usize,
    header_read_timeout: Duration,
    limits: Limits,
    runtime: Runtime,
    metrics: Arc<Metrics>,
    records: mpsc::Sender<InvocationRecord>,
    remote: Option<Arc<remote::Remote>>,
    access: Access,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()> {
    // Rollouts swap versions but never add or remove functions: the set of names is fixed.
    let names: Vec<String> = runtime.functions().map(|f| f.spec.name.clone()).collect();
    let served: Vec<Served> = names
        .iter()
        .map(|name| Served {
            series: FunctionSeries::new(name, metrics.clone()),
        })
        .collect();
    let tokens = Arc::new(auth::Tokens::new(&access.tokens, &names));
    let by_name = names.into_iter().enumerate().map(|(i, n)| (n, i)).collect();
    let gateway = Arc::new(Gateway {
        runtime,
        served,
        by_name,
        records: RecordSink {
            telemetry: records,
            dropped: metrics.invocation_records_dropped.clone(),
        },
        remote,
        header_read_timeout,
        pace: BodyPace {
            idle_timeout: limits.body_idle_timeout,
            min_rate: limits.body_min_rate,
            grace: limits.body_rate_grace,
        },
        tokens,
    });
    let threads = if threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        threads
    };
    let listen = listener
        .local_addr()
        .context("the gateway's listening socket")?;
    let mut workers = server::start(
        &listener,
        threads,
        limits.max_connections,
        &metrics,
        gateway.clone(),
        shutdown.clone(),
    )
    .with_context(|| format!("starting the gateway on {listen} (gateway.listen)"))?;
    drop(listener);
    info!(%listen, threads, "gateway listening");
    if let Some(peer) = access.peer {
        let at = peer.local_addr().context("the peer listener's socket")?;
        workers.extend(
            peer::server::start(&peer, threads, limits.max_connections, &gateway, &shutdown)
                .with_context(|| {
                    format!("starting the peer listener on {at} (gateway.peer_listen)")
                })?,
        );
        info!(listen = %at, threads, "peer listener (mutual TLS, fleet agents only) listening");
    }
    crate::shutdown::stopped(&mut shutdown).await;
    // The threads finish the invocations in flight and hand their last notes on. Every thread
    // is joined (no short cut at the first that panicked).
    let panicked = tokio::task::spawn_blocking(move || {
        workers
            .into_iter()
            .map(JoinHandle::join)
            .filter(Result::is_err)
            .count()
    })
    .await
    .unwrap_or(1);
    anyhow::ensure!(panicked == 0, "{panicked} gateway threads panicked");
    Ok(())
}

/// How long a client may take to send a request's head, unless configured.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
