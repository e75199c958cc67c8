//! `synapse-agent run`: wires the parts together and stops them cleanly.
//!
//! Order matters: leftovers of a previous agent are cleaned first, the store is opened, the
//! eBPF programs are attached before any instance starts (so no exec is missed), then the
//! metrics endpoint, the instance slots and the telemetry loop run until SIGTERM or SIGINT.

use std::sync::Arc;

use anyhow::{Context as _, Result};
use tokio::{
    signal::unix::SignalKind,
    sync::{mpsc, watch},
    task::JoinSet,
};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{
    cgroup::CgroupLayout,
    config::{AgentConfig, Tier},
    metrics::Metrics,
    policy::live::LivePolicies,
    runtime::{Runtime, RuntimeEnv, readiness::Readiness},
    store::Store,
    telemetry::{collector::Collector, ebpf::KernelProbes, tracker::Tracker},
};

/// Interval sets waiting for the link (they are durable once the link takes them).
const LINK_QUEUE: usize = 1024;
/// Invocation records the telemetry loop may lag behind by.
const RECORDS_QUEUE: usize = 65_536;
/// Closed intervals the pool planners may lag behind by.
const CLOSED_QUEUE: usize = 64;

pub async fn run(config: AgentConfig) -> Result<()> {
    let agent_id = config.agent_id();
    info!(agent = %agent_id, tier = ?config.agent.tier, version = env!("CARGO_PKG_VERSION"), "starting");
    let layout = CgroupLayout::detect(config.cgroup.v2_mount.as_deref(), &config.cgroup.subtree)?;
    info!(
        v2 = %layout.v2.display(),
        v1_memory = ?layout.v1_memory,
        v2_memory = layout.v2_memory,
        "cgroup hierarchies"
    );
    let stale = layout
        .remove_all()
        .context("cleaning cgroups left by a previous agent")?;
    if stale > 0 {
        warn!(
            cgroups = stale,
            "removed cgroups left by an agent that did not stop cleanly"
        );
    }

    let store = Arc::new(Store::open(
        &config.agent.state_dir,
        config.store.raw_retention,
        config.store.hourly_retention,
    )?);
    let metrics = Arc::new(Metrics::new());
    let probes = KernelProbes::load(
        config.telemetry.ring_buffer_bytes,
        config.telemetry.bpf_stats,
    )?;
    let filter = probes.filter();

    let mut tracker = Tracker::default();
    let names = config
        .functions
        .iter()
        .map(|f| f.name.as_str())
        .chain(config.watch.iter().map(|w| w.function.as_str()));
    for (id, name) in names.enumerate() {
        tracker.add_function(id as u32, name);
        restore_counters(&metrics, &store, name)?;
    }
    let first_watch_id = config.functions.len();
    for (i, w) in config.watch.iter().enumerate() {
        let id =
            std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&w.cgroup).with_context(
                || format!("watched cgroup {} of {}", w.cgroup.display(), w.function),
            )?);
        filter.watch(id, (first_watch_id + i) as u32)?;
        info!(function = %w.function, cgroup = %w.cgroup.display(), "watching cgroup");
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let (records_tx, records_rx) = mpsc::channel(RECORDS_QUEUE);
    let readiness = Readiness::default();
    let env = Arc::new(RuntimeEnv {
        layout: layout.clone(),
        filter: filter.clone(),
        readiness: readiness.clone(),
        metrics: metrics.clone(),
        records: records_tx.clone(),
        shutdown: stop_rx.clone(),
    });
    let section = config.policy.clone();
    let interval = config.telemetry.interval;
    // Pretraining the default neural model takes a moment: off the async workers.
    let policies = tokio::task::spawn_blocking(move || LivePolicies::load(&section, interval))
        .await
        .context("setting up the pool policy")??;
    info!(policy = %policies.label(), "warm pools follow the policy");
    let runtime = Runtime::with_planners(&config.functions, env, |spec| policies.planner(spec));
    let (closed_tx, closed_rx) = mpsc::channel(CLOSED_QUEUE);
    let feed = tokio::spawn(runtime.clone().feed(closed_rx));
    let mut tasks = JoinSet::new();
    tasks.spawn(crate::metrics::serve(
        config.metrics.listen,
        metrics.clone(),
        store.clone(),
        stop_rx.clone(),
    ));
    tasks.spawn(crate::gateway::serve(
        config.gateway.listen,
        config.gateway.threads,
        runtime.clone(),
        metrics.clone(),
        records_tx,
        stop_rx.clone(),
    ));
    let sink = config.link.clone().map(|link_config| {
        let (tx, rx) = mpsc::channel(LINK_QUEUE);
        let identity = crate::link::AgentIdentity {
            id: agent_id.clone(),
            tier: match config.agent.tier {
                Tier::Edge => crate::link::Tier::Edge,
                Tier::Regional => crate::link::Tier::Regional,
                Tier::Cloud => crate::link::Tier::Cloud,
            },
            labels: config.agent.labels.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            capacity: crate::link::host_capacity(),
        };
        let cancel = CancellationToken::new();
        let mut stop = stop_rx.clone();
        let on_stop = cancel.clone();
        tokio::spawn(async move {
            crate::shutdown::stopped(&mut stop).await;
            on_stop.cancel();
        });
        info!(hub = %link_config.hub, "linking to the hub");
        let db = store.db().clone();
        tasks.spawn(async move {
            crate::link::run(link_config, identity, db, rx, cancel)
                .await
                .context("link to the hub")
        });
        tx
    });
    let collector = Collector {
        probes,
        tracker,
        metrics,
        store,
        interval: config.telemetry.interval,
        print: config.telemetry.print,
        sink,
        readiness,
        records: records_rx,
        closed: Some(closed_tx),
        first_watched_id: first_watch_id as u32,
    };
    tasks.spawn(collector.run(stop_rx.clone()));
    let mut managers = JoinSet::new();
    for f in runtime.functions() {
        managers.spawn(f.clone().manage());
    }

    let mut term = tokio::signal::unix::signal(SignalKind::terminate())?;
    let mut int = tokio::signal::unix::signal(SignalKind::interrupt())?;
    let failure = tokio::select! {
        _ = term.recv() => { info!("SIGTERM: stopping"); None }
        _ = int.recv() => { info!("SIGINT: stopping"); None }
        Some(done) = tasks.join_next() => Some(done),
    };
    let _ = stop_tx.send(true);
    while managers.join_next().await.is_some() {}
    // The collector reads the last events of the stopped instances before it closes.
    let mut failure = failure;
    while let Some(done) = tasks.join_next().await {
        if failure.is_none() && !matches!(done, Ok(Ok(()))) {
            failure = Some(done);
        }
    }
    // The telemetry loop is done, so the feed has had its last interval.
    if let Err(e) = feed.await {
        warn!("feeding the pool planners: {e}");
    }
    if let Err(e) = layout.remove_all() {
        warn!("removing the agent's cgroups: {e:#}");
    }
    info!("stopped");
    match failure {
        Some(Ok(Err(e))) => Err(e),
        Some(Err(e)) => Err(e.into()),
        _ => Ok(()),
    }
}

/// Counters continue from the stored totals, so a restart does not reset them.
fn restore_counters(metrics: &Metrics, store: &Store, function: &str) -> Result<()> {
    let t = store.totals(function)?;
    let l = Metrics::label(function);
    metrics
        .kernel_accepts
        .get_or_create(&l)
        .inc_by(t.invocations);
    for (start, n) in [("warm", t.warm_invocations), ("cold", t.cold_invocations)] {
        let sl = crate::metrics::StartLabel {
            function: function.into(),
            start: start.into(),
        };
        metrics.invocations.get_or_create(&sl).inc_by(n);
    }
    metrics.cold_starts.get_or_create(&l).inc_by(t.cold_starts);
    metrics
        .instance_starts
        .get_or_create(&l)
        .inc_by(t.instance_starts);
    metrics
        .instance_exits
        .get_or_create(&l)
        .inc_by(t.instance_exits);
    metrics
        .idle_instance_seconds
        .get_or_create(&l)
        .inc_by(t.idle_instance_s);
    metrics.instances.get_or_create(&l).set(0);
    Ok(())
}
