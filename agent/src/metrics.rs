//! The agent's Prometheus metrics and its small HTTP API: `/metrics` (Prometheus text),
//! `/v1/telemetry` (stored intervals as JSON) and `/healthz`.
//!
//! Every metric is documented by its help text here and in README's metrics list.

use std::{
    net::SocketAddr,
    sync::{Arc, atomic::AtomicU64},
};

use anyhow::{Context as _, Result};
use axum::{
    Router,
    extract::{Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use prometheus_client::{
    encoding::{
        EncodeLabelSet,
        text::{encode_eof, encode_registry},
    },
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use serde::Deserialize;
use tokio::sync::watch;

use crate::{
    forecast::error::ForecastErrorMetric, store::Store, telemetry::histogram::LATENCY_BOUNDS_S,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FunctionLabel {
    pub function: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StartLabel {
    pub function: String,
    /// `warm` or `cold` for invocations through the gateway; `unknown` for the accepted
    /// connections of watched cgroups, which the agent sees only in the kernel.
    pub start: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndLabel {
    pub function: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    pub function: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProgramLabel {
    pub program: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BOUNDS_S.iter().copied())
}

fn lifetime_histogram() -> Histogram {
    Histogram::new([
        1.0, 10.0, 60.0, 300.0, 600.0, 1800.0, 3600.0, 21_600.0, 86_400.0,
    ])
}

/// All metrics of the agent.
pub struct Metrics {
    registry: Registry,
    /// Families that carry the `synapse_` prefix in their own name.
    named: Registry,
    pub forecast_invocations: Family<FunctionLabel, Gauge<f64, AtomicU64>>,
    pub forecast_model_version: Family<FunctionLabel, Gauge>,
    pub forecast_error: ForecastErrorMetric,
    pub invocations: Family<StartLabel, Counter>,
    pub kernel_accepts: Family<FunctionLabel, Counter>,
    pub invocation_seconds: HistogramFamily<FunctionLabel>,
    pub queue_seconds: HistogramFamily<FunctionLabel>,
    pub gateway_responses: Family<CodeLabel, Counter>,
    pub warm_instances: Family<FunctionLabel, Gauge>,
    pub pool_target: Family<FunctionLabel, Gauge>,
    pub queue_depth: Family<FunctionLabel, Gauge>,
    pub idle_memory_mb_seconds: Family<FunctionLabel, Counter<f64, AtomicU64>>,
    pub instance_ends: Family<EndLabel, Counter>,
    pub invocation_records_dropped: Counter,
    pub gateway_connections_open: Gauge,
    pub gateway_connections_refused: Counter,
    pub cold_starts: Family<FunctionLabel, Counter>,
    pub cold_start_seconds: HistogramFamily<FunctionLabel>,
    pub first_request_seconds: HistogramFamily<FunctionLabel>,
    pub instances: Family<FunctionLabel, Gauge>,
    pub instance_starts: Family<FunctionLabel, Counter>,
    pub instance_exits: Family<FunctionLabel, Counter>,
    pub instance_lifetime_seconds: HistogramFamily<FunctionLabel>,
    pub idle_instance_seconds: Family<FunctionLabel, Counter<f64, AtomicU64>>,
    pub ebpf_events: Family<KindLabel, Counter>,
    pub ebpf_events_lost: Counter,
    pub ebpf_program_runs: Family<ProgramLabel, Gauge>,
    pub ebpf_program_run_seconds: Family<ProgramLabel, Gauge<f64, AtomicU64>>,
    pub host_cpu_usage: Gauge<f64, AtomicU64>,
    pub host_memory_total: Gauge,
    pub host_memory_used: Gauge,
    pub host_load1: Gauge<f64, AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("synapse");
        let invocations = Family::default();
        r.register("invocations", "Invocations of a function by how they started: warm or cold through the gateway, unknown for watched cgroups (their accepted connections)", invocations.clone());
        let kernel_accepts = Family::default();
        r.register(
            "kernel_accepts",
            "Connections accepted by a function's instances, counted by eBPF in the kernel",
            kernel_accepts.clone(),
        );
        let invocation_seconds: HistogramFamily<FunctionLabel> =
            Family::new_with_constructor(latency_histogram);
        r.register("invocation_seconds", "Invocation latency at the gateway: arrival to the end of the answer, queueing included", invocation_seconds.clone());
        let queue_seconds: HistogramFamily<FunctionLabel> =
            Family::new_with_constructor(latency_histogram);
        r.register(
            "queue_seconds",
            "Time an invocation waited for an instance",
            queue_seconds.clone(),
        );
        let gateway_responses = Family::default();
        r.register(
            "gateway_responses",
            "Answers of the gateway by HTTP status code",
            gateway_responses.clone(),
        );
        let warm_instances = Family::default();
        r.register(
            "warm_instances",
            "Ready instances of a function (idle or busy)",
            warm_instances.clone(),
        );
        let pool_target = Family::default();
        r.register(
            "pool_target",
            "Instances the function's pool policy wants held now",
            pool_target.clone(),
        );
        let forecast_invocations = Family::default();
        r.register(
            "forecast_invocations",
            "Invocations the function's pool policy expects in the next telemetry interval",
            forecast_invocations.clone(),
        );
        let forecast_model_version = Family::default();
        r.register(
            "forecast_model_version",
            "Neural model version in the function's forecast for the next telemetry interval (0: the agent's own model)",
            forecast_model_version.clone(),
        );
        let mut named = Registry::default();
        let forecast_error = ForecastErrorMetric::register(&mut named);
        let queue_depth = Family::default();
        r.register(
            "queue_depth",
            "Invocations waiting for an instance",
            queue_depth.clone(),
        );
        let idle_memory_mb_seconds = Family::default();
        r.register("idle_memory_mb_seconds", "Wasted memory: idle ready instances x their memory (memory_mb, or 128 when unset) x time", idle_memory_mb_seconds.clone());
        let instance_ends = Family::default();
        r.register("instance_ends", "Instances that ended, by reason: retired, stopped, exited, crashed, out_of_memory, never_ready, start_failed", instance_ends.clone());
        let invocation_records_dropped = Counter::default();
        r.register("invocation_records_dropped", "Invocation records not stored because the telemetry loop lagged (metrics still count them)", invocation_records_dropped.clone());
        let gateway_connections_open = Gauge::default();
        r.register(
            "gateway_connections_open",
            "Client connections the gateway holds open",
            gateway_connections_open.clone(),
        );
        let gateway_connections_refused = Counter::default();
        r.register(
            "gateway_connections_refused",
            "Client connections closed at once because the gateway held gateway.max_connections",
            gateway_connections_refused.clone(),
        );
        let cold_starts = Family::default();
        r.register(
            "cold_starts",
            "Instances that became ready (first listen()), each one cold start",
            cold_starts.clone(),
        );
        let cold_start_seconds: HistogramFamily<FunctionLabel> =
            Family::new_with_constructor(latency_histogram);
        r.register(
            "cold_start_seconds",
            "Cold-start latency: exec of an instance to its first listen(), kernel time",
            cold_start_seconds.clone(),
        );
        let first_request_seconds: HistogramFamily<FunctionLabel> =
            Family::new_with_constructor(latency_histogram);
        r.register(
            "first_request_seconds",
            "Exec of an instance to its first accept(): when the first request was taken",
            first_request_seconds.clone(),
        );
        let instances = Family::default();
        r.register(
            "instances",
            "Instances of a function alive now",
            instances.clone(),
        );
        let instance_starts = Family::default();
        r.register(
            "instance_starts",
            "Instances started (exec seen in their cgroup)",
            instance_starts.clone(),
        );
        let instance_exits = Family::default();
        r.register(
            "instance_exits",
            "Instances whose main process exited",
            instance_exits.clone(),
        );
        let instance_lifetime_seconds: HistogramFamily<FunctionLabel> =
            Family::new_with_constructor(lifetime_histogram);
        r.register(
            "instance_lifetime_seconds",
            "Lifetime of exited instances, exec to exit",
            instance_lifetime_seconds.clone(),
        );
        let idle_instance_seconds = Family::default();
        r.register("idle_instance_seconds", "Instance-seconds during which a ready instance accepted no connection (sampled each second)", idle_instance_seconds.clone());
        let ebpf_events = Family::default();
        r.register(
            "ebpf_events",
            "Lifecycle events read from the ring buffer, by kind",
            ebpf_events.clone(),
        );
        let ebpf_events_lost = Counter::default();
        r.register(
            "ebpf_events_lost",
            "Lifecycle events dropped because the ring buffer was full (counted in the kernel)",
            ebpf_events_lost.clone(),
        );
        let ebpf_program_runs = Family::default();
        r.register(
            "ebpf_program_runs",
            "Runs of each eBPF program since load (needs kernel BPF stats)",
            ebpf_program_runs.clone(),
        );
        let ebpf_program_run_seconds = Family::default();
        r.register(
            "ebpf_program_run_seconds",
            "Total run time of each eBPF program since load (needs kernel BPF stats)",
            ebpf_program_run_seconds.clone(),
        );
        let host_cpu_usage = Gauge::default();
        r.register(
            "host_cpu_usage_ratio",
            "Busy share of all the host's CPUs, 0 to 1",
            host_cpu_usage.clone(),
        );
        let host_memory_total = Gauge::default();
        r.register(
            "host_memory_total_bytes",
            "Host memory",
            host_memory_total.clone(),
        );
        let host_memory_used = Gauge::default();
        r.register(
            "host_memory_used_bytes",
            "Host memory in use",
            host_memory_used.clone(),
        );
        let host_load1 = Gauge::default();
        r.register(
            "host_load1",
            "Host load average over one minute",
            host_load1.clone(),
        );
        Self {
            registry: r,
            named,
            forecast_invocations,
            forecast_model_version,
            forecast_error,
            invocations,
            kernel_accepts,
            invocation_seconds,
            queue_seconds,
            gateway_responses,
            warm_instances,
            pool_target,
            queue_depth,
            idle_memory_mb_seconds,
            instance_ends,
            invocation_records_dropped,
            gateway_connections_open,
            gateway_connections_refused,
            cold_starts,
            cold_start_seconds,
            first_request_seconds,
            instances,
            instance_starts,
            instance_exits,
            instance_lifetime_seconds,
            idle_instance_seconds,
            ebpf_events,
            ebpf_events_lost,
            ebpf_program_runs,
            ebpf_program_run_seconds,
            host_cpu_usage,
            host_memory_total,
            host_memory_used,
            host_load1,
        }
    }

    pub fn label(function: &str) -> FunctionLabel {
        FunctionLabel {
            function: function.to_string(),
        }
    }

    /// Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode_registry(&mut out, &self.registry);
        let _ = encode_registry(&mut out, &self.named);
        let _ = encode_eof(&mut out);
        out
    }
}

#[derive(Clone)]
struct ApiState {
    metrics: Arc<Metrics>,
    store: Arc<Store>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TelemetryQuery {
    function: Option<String>,
    #[serde(default)]
    since_ms: i64,
    #[serde(default)]
    hourly: bool,
}

async fn metrics_text(State(s): State<ApiState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(),
    )
        .into_response()
}

async fn telemetry_json(State(s): State<ApiState>, Query(q): Query<TelemetryQuery>) -> Response {
    let result = (|| -> Result<serde_json::Value> {
        let functions = match q.function {
            Some(f) => vec![f],
            None => s.store.functions()?,
        };
        let mut out = serde_json::Map::new();
        for f in functions {
            let records = s.store.intervals(&f, q.since_ms, q.hourly)?;
            let totals = s.store.totals(&f)?;
            out.insert(
                f,
                serde_json::json!({ "totals": totals, "intervals": records }),
            );
        }
        Ok(serde_json::Value::Object(out))
    })();
    match result {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}\n")).into_response(),
    }
}

/// Serves the metrics and the telemetry API until `shutdown` turns true.
pub async fn serve(
    listen: SocketAddr,
    metrics: Arc<Metrics>,
    store: Arc<Store>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics_text))
        .route("/v1/telemetry", get(telemetry_json))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(ApiState { metrics, store });
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding the metrics endpoint on {listen} (metrics.listen)"))?;
    tracing::info!(%listen, "metrics and telemetry API listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            crate::shutdown::stopped(&mut shutdown).await;
        })
        .await
        .context("metrics endpoint")
}
