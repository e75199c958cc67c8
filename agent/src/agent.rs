//! `synapse-agent run`: wires the parts together and stops them cleanly.
//!
//! Order matters: leftovers of a previous agent are cleaned first, the store is opened, the
//! eBPF programs are attached before any instance starts (so no exec is missed), then the
//! metrics endpoint, the instance slots and the telemetry loop run until SIGTERM or SIGINT.
//! systemd hears `READY=1` once the gateway listens, and `STOPPING=1` when the agent stops.

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
    forecast::{
        ModelSource,
        neural::{ModelHandle, ServingModel},
    },
    metrics::Metrics,
    policy::live::LivePolicies,
    runtime::{Runtime, RuntimeEnv, readiness::Readiness},
    store::Store,
    telemetry::{
        collector::{Collector, LinkSink},
        ebpf::KernelProbes,
        tracker::Tracker,
    },
};

/// Invocation records the telemetry loop may lag behind by.
const RECORDS_QUEUE: usize = 65_536;
/// Longest wait for the invocations in flight at a stop (systemd's TimeoutStopSec is 30 s).
const DRAIN_LIMIT: std::time::Duration = std::time::Duration::from_secs(15);
/// Closed intervals the pool planners may lag behind by.
const CLOSED_QUEUE: usize = 64;

pub async fn run(config: AgentConfig) -> Result<()> {
    // First of all, so that a stop asked for while the agent starts is a clean stop.
    let mut term = tokio::signal::unix::signal(SignalKind::terminate())?;
    let mut int = tokio::signal::unix::signal(SignalKind::interrupt())?;
    let agent_id = config.agent_id();
    info!(agent = %agent_id, tier = ?config.agent.tier, version = env!("CARGO_PKG_VERSION"), "starting");
    let mut layout =
        CgroupLayout::detect(config.cgroup.v2_mount.as_deref(), &config.cgroup.subtree)?;
    if let Some(own) = layout
        .adopt_delegation()
        .context("moving into the delegated cgroup")?
    {
        info!(cgroup = %own.display(), "own cgroup delegated: the agent runs in agent/ and keeps its instance cgroups below it");
    }
    let missing = crate::runtime::process::missing_capabilities();
    if !missing.is_empty() {
        warn!(
            missing = %missing.join(" "),
            "capabilities missing for function instances: CAP_SETUID and CAP_SETGID start them as their users, CAP_KILL stops them, CAP_SETPCAP empties their bounding set (the systemd unit grants all four)"
        );
    }
    info!(
        v2 = %layout.v2_root().display(),
        v1_memory = ?layout.v1_memory,
        v2_memory = layout.v2_memory,
        v1_pids = ?layout.v1_pids,
        v2_pids = layout.v2_pids,
        v1_cpu = ?layout.v1_cpu,
        v2_cpu = layout.v2_cpu,
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
        tasks: tokio::runtime::Handle::current(),
        instances: config.instances.clone(),
    });
    let section = config.policy.clone();
    let interval = config.telemetry.interval;
    let learning = config.learning.enabled && config.link.is_some();
    // Loading and checking the neural model with tract takes a moment: off the async workers.
    let (policies, served_model) =
        tokio::task::spawn_blocking(move || pool_policies(&section, interval, learning))
            .await
            .context("setting up the pool policy")??;
    info!(policy = %policies.label(), "warm pools follow the policy");
    let runtime = Runtime::with_planners(&config.functions, env, |spec| policies.planner(spec));
    let (closed_tx, closed_rx) = mpsc::channel(CLOSED_QUEUE);
    let feed = tokio::spawn(runtime.clone().feed(closed_rx));
    // Versions applied by rollouts replace the configured ones before any pool starts.
    let mut rollouts =
        crate::rollout::Rollouts::restore(runtime.clone(), store.db(), &config.functions)
            .context("restoring the versions rollouts applied")?;
    // Forwarding to the tiers placement keeps warm applies only when linked to a hub, over
    // the peer link with the link's agent certificate.
    let peer_tls = match &config.link {
        Some(link) => Some(
            crate::gateway::peer::PeerTls::load(&link.ca, &link.cert, &link.key)
                .context("the peer link's TLS, from [link] ca, cert and key")?,
        ),
        None => None,
    };
    let remote = peer_tls.as_ref().map(|tls| {
        crate::gateway::remote::Remote::new(
            Some(crate::gateway::peer::PeerClient::new(tls)),
            config.functions.iter().map(|f| f.name.as_str()),
        )
    });
    let peer_listener = match (config.gateway.peer_listen, peer_tls) {
        (Some(addr), Some(tls)) => Some(
            crate::gateway::peer::PeerListener::bind(addr, tls).with_context(|| {
                format!("binding the peer listener on {addr} (gateway.peer_listen)")
            })?,
        ),
        _ => None,
    };
    let peer_bound = match &peer_listener {
        Some(p) => Some(p.local_addr().context("the peer listener's socket")?),
        None => None,
    };
    // The gateway's socket is bound (and listening: connections wait in its backlog) before
    // the metrics endpoint answers, so a client that sees `/healthz` can connect to it.
    let gateway = crate::gateway::bind(config.gateway.listen)?;
    let mut tasks = JoinSet::new();
    tasks.spawn(crate::metrics::serve(
        config.metrics.listen,
        metrics.clone(),
        store.clone(),
        stop_rx.clone(),
    ));
    // The gateway stops first (see the end of this function), so it has a signal of its own
    // and says when it has drained.
    let (drain_tx, drain_rx) = watch::channel(false);
    let (drained_tx, drained_rx) = tokio::sync::oneshot::channel::<()>();
    let serving = crate::gateway::serve_with_remote(
        gateway,
        config.gateway.threads,
        config.gateway.header_read_timeout,
        config.gateway.limits(),
        runtime.clone(),
        metrics.clone(),
        records_tx,
        remote.clone(),
        crate::gateway::Access {
            tokens: config.gateway.tokens.clone(),
            peer: peer_listener,
        },
        drain_rx,
    );
    tasks.spawn(async move {
        let served = serving.await;
        let _ = drained_tx.send(());
        served
    });
    let longest_invocation = config
        .functions
        .iter()
        .map(|f| f.invocation_timeout)
        .max()
        .unwrap_or_default();
    // Subsystems that talk to the hub subscribe to their control frames here, before the
    // link starts.
    let mut control = crate::control::ControlBus::default();
    if let Some(model) = &served_model {
        // Taken before the learner runs: the model in service is still the agent's own.
        let own = crate::learning::OwnModel::new(model.clone(), control.to_hub());
        rollouts = rollouts.with_learning_models(Box::new(own));
    }
    let rollout_frames = rollouts.subscribe(&mut control);
    let (link_status, link_watch) = watch::channel(crate::link::LinkStatus::default());
    tasks.spawn(rollouts.run(rollout_frames, link_watch, stop_rx.clone()));
    if let Some(model) = served_model {
        // The neural forecaster in service, which the pool policies read; the learner swaps in
        // the versions the hub ships.
        let frames = control.subscribe(crate::learning::KINDS);
        let data = crate::learning::StoreMinutes {
            store: store.clone(),
            window: config.learning.window,
            interval: config.telemetry.interval,
            max_pairs: config.learning.max_pairs,
        };
        let learner = crate::learning::Learner::new(model.clone(), data, control.to_hub());
        let cancel = CancellationToken::new();
        let mut stop = stop_rx.clone();
        let on_stop = cancel.clone();
        tokio::spawn(async move {
            crate::shutdown::stopped(&mut stop).await;
            on_stop.cancel();
        });
        tokio::spawn(learner.run(frames, cancel));
    }
    if let Some(remote) = remote {
        let placement = crate::placement::PlacementContext {
            config: config.placement.clone(),
            runtime: runtime.clone(),
            remote,
            store: store.clone(),
            to_hub: control.to_hub(),
            assignments: control.subscribe(&["placement_assignment"]),
            interval: config.telemetry.interval,
        };
        tasks.spawn({
            let stop = stop_rx.clone();
            async move {
                crate::placement::run(placement, stop).await;
                Ok(())
            }
        });
    }
    let sink = config.link.clone().map(|link_config| -> Result<LinkSink> {
        // Shared with the collector, which writes each interval set into it before the
        // store's flush: the store and the outbox keep an interval together or not at all.
        let outbox = Arc::new(
            crate::link::Outbox::open(store.db(), link_config.outbox_max_batches)
                .context("opening the link's outbox")?,
        );
        let wake = Arc::new(tokio::sync::Notify::new());
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
            gateway: crate::placement::declared_gateway(peer_bound),
        };
        let cancel = CancellationToken::new();
        let mut stop = stop_rx.clone();
        let on_stop = cancel.clone();
        tokio::spawn(async move {
            crate::shutdown::stopped(&mut stop).await;
            on_stop.cancel();
        });
        info!(hub = %link_config.hub, "linking to the hub");
        let (channels, dispatch) = control.into_link();
        // The dispatcher ends with the link (when it drops its end of the channels).
        tokio::spawn(dispatch);
        let status = link_status;
        let (to_send, woken) = (outbox.clone(), wake.clone());
        tasks.spawn(async move {
            crate::link::run_with_outbox(
                link_config,
                identity,
                to_send,
                woken,
                channels,
                cancel,
                status,
            )
            .await
            .context("link to the hub")
        });
        Ok(LinkSink { outbox, wake })
    });
    let sink = sink.transpose()?;
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
        planners: Some(runtime.clone()),
        first_watched_id: first_watch_id as u32,
    };
    tasks.spawn(collector.run(stop_rx.clone()));
    let mut managers = JoinSet::new();
    for f in runtime.functions() {
        managers.spawn(f.clone().manage());
    }

    // Telemetry is attached and the gateway listens: systemd may start what depends on us.
    let systemd = crate::notify::Notifier::from_env();
    systemd.ready(&format!("serving on {}", config.gateway.listen));
    let failure = tokio::select! {
        _ = term.recv() => { info!("SIGTERM: stopping"); None }
        _ = int.recv() => { info!("SIGINT: stopping"); None }
        Some(done) = tasks.join_next() => Some(done),
    };
    systemd.stopping();
    // The gateway first: it stops accepting and finishes the invocations in flight while their
    // instances still run (a stop never fails an invocation it took; one forwarded here from
    // another tier after the listener closed is served there instead). Then everything else.
    let _ = drain_tx.send(true);
    let drain_limit = longest_invocation.min(DRAIN_LIMIT) + std::time::Duration::from_secs(1);
    if tokio::time::timeout(drain_limit, drained_rx).await.is_err() {
        warn!("the gateway did not drain within {drain_limit:?}; stopping the instances anyway");
    }
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

/// The pool policies; when the agent learns with its hub, they read the neural model in
/// service (returned too), which the learner replaces with each version the hub ships.
fn pool_policies(
    section: &crate::config::PolicySection,
    interval: std::time::Duration,
    learning: bool,
) -> Result<(LivePolicies, Option<ModelHandle>)> {
    if !learning {
        return Ok((LivePolicies::load(section, interval)?, None));
    }
    let bytes = crate::policy::live::configured_model_bytes(section)?;
    let model = ModelHandle::new(
        ServingModel::load(0, &bytes).context("loading the neural forecaster (policy.model)")?,
    );
    let policies = LivePolicies::with_model(section, interval, ModelSource::Served(model.clone()))?;
    Ok((policies, Some(model)))
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
