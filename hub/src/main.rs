//! `synapse-hub`: the fleet's hub daemon. Opens its sled store, then serves the QUIC link to
//! agents, the gRPC console to operators and Prometheus metrics, until SIGTERM or SIGINT.

use std::{path::PathBuf, sync::Arc};

use anyhow::Context;
use clap::Parser;
use synapse_hub::{
    certs::revocation::Revocations,
    config::HubConfig,
    console::{self, ConsoleAccess, ConsoleTls, audit::AuditLog},
    federation::{Federation, console::LearningService},
    link::{self, LinkContext},
    metrics::{self, HubMetrics},
    placement::{Placement, service::PlacementService},
    registry::{Durability, Registry},
    rollout::{RolloutEngine, service::RolloutsService},
};
use synapse_link::tls::{self, TlsFiles};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(name = "synapse-hub", version, about = "SynapseStream hub")]
struct Cli {
    /// Configuration file (TOML).
    #[arg(
        short,
        long,
        env = "SYNAPSE_HUB_CONFIG",
        default_value = "/etc/synapse/hub.toml"
    )]
    config: PathBuf,
    /// Check the configuration and exit.
    #[arg(long)]
    check: bool,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let cli = Cli::parse();
    let config = HubConfig::load(&cli.config)?;
    let revocations = Revocations::from_config(config.console.revoked.as_deref())?;
    if cli.check {
        println!("{}: ok", cli.config.display());
        return Ok(());
    }
    tokio::runtime::Runtime::new()
        .context("cannot start the async runtime")?
        .block_on(run(config, revocations))
}

async fn run(config: HubConfig, revocations: Revocations) -> anyhow::Result<()> {
    // sled's background flusher stays on (every 500 ms) for the state written outside the
    // batches' explicit flushes; the open waits for a predecessor's lock.
    let db = synapse_db::OpenOptions {
        background_flush: Some(std::time::Duration::from_millis(500)),
        ..Default::default()
    }
    .open(&config.data_dir)?;
    let registry =
        Registry::open(&db, config.link.heartbeat_interval).context("cannot open the registry")?;
    let durability = Durability::start(db.clone());
    let audit =
        AuditLog::open(&db, config.console.audit_keep).context("cannot open the audit log")?;
    let metrics = HubMetrics::new();
    let shutdown = CancellationToken::new();

    let files = TlsFiles {
        ca: &config.tls.ca,
        cert: &config.tls.cert,
        key: &config.tls.key,
    };
    let server = tls::server_config(&files, config.link.idle_timeout).context("link TLS")?;
    let endpoint = quinn::Endpoint::server(server, config.link.listen)
        .with_context(|| format!("cannot listen for the link on udp {}", config.link.listen))?;
    let console_listener = tokio::net::TcpListener::bind(config.console.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen for the console on tcp {}",
                config.console.listen
            )
        })?;
    let metrics_listener = tokio::net::TcpListener::bind(config.metrics.listen)
        .await
        .with_context(|| format!("cannot listen for metrics on tcp {}", config.metrics.listen))?;
    tracing::info!(
        hub = %config.hub_id,
        link = %endpoint.local_addr().context("link address")?,
        console = %console::describe(console_listener.local_addr()?),
        metrics = %metrics::describe(metrics_listener.local_addr()?),
        store = %config.data_dir.display(),
        "hub serving"
    );

    let context = LinkContext::new(
        config.hub_id.clone(),
        registry.clone(),
        durability,
        metrics.clone(),
        config.link.max_frame_bytes,
        config.link.handshake_timeout,
    );
    let rollouts = RolloutEngine::new(
        &db,
        registry.clone(),
        context.outlet(),
        config.rollouts.clone(),
    )
    .context("cannot open the rollout store")?;
    // Model versions from federated rounds go out through rollouts.
    let federation = Federation::open(
        &db,
        config.federation.clone(),
        context.outlet(),
        Box::new(rollouts.clone()),
        config.link.max_frame_bytes,
    )
    .context("cannot start federated learning")?;
    let placement = Placement::open(
        &db,
        config.placement.clone(),
        registry.clone(),
        context.outlet(),
    )
    .context("cannot open the placement plans")?
    .with_metrics(metrics.clone());
    let context = Arc::new(
        context
            .with_revocations(revocations.clone())
            .with_handler(Arc::new(rollouts.clone()))
            .with_handler(federation.clone())
            .with_handler(Arc::new(placement.clone())),
    );
    let rollouts_task = tokio::spawn(rollouts.clone().run(shutdown.clone()));
    let federation_task = tokio::spawn(federation.clone().run(shutdown.clone()));
    let placement_task = tokio::spawn(placement.clone().run(shutdown.clone()));
    let mut routes = console::RoutesBuilder::default();
    RolloutsService::add_to(rollouts, &mut routes);
    routes.add_service(LearningService::routes(federation));
    routes.add_service(PlacementService::server(placement));
    let link_task = tokio::spawn(link::serve(endpoint, context, shutdown.clone()));
    let revocations_task = tokio::spawn(revocations.clone().watch(shutdown.clone()));
    let access = ConsoleAccess {
        revocations,
        audit: Arc::new(audit),
    };
    let console_task = tokio::spawn({
        let (registry, shutdown, tls) = (registry.clone(), shutdown.clone(), config.tls.clone());
        async move {
            let files = ConsoleTls {
                ca: &tls.ca,
                cert: &tls.cert,
                key: &tls.key,
            };
            console::serve_with(console_listener, files, registry, routes, access, shutdown).await
        }
    });
    let metrics_task = tokio::spawn(metrics::serve(metrics_listener, metrics, shutdown.clone()));

    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot watch SIGTERM")?;
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
    }
    shutdown.cancel();
    link_task.await.context("link task")?;
    revocations_task.await.context("revocation task")?;
    rollouts_task.await.context("rollout task")?;
    federation_task.await.context("federation task")?;
    placement_task.await.context("placement task")?;
    console_task
        .await
        .context("console task")?
        .context("console")?;
    metrics_task
        .await
        .context("metrics task")?
        .context("metrics")?;
    db.flush_async().await.context("final store flush")?;
    tracing::info!("hub stopped");
    Ok(())
}
