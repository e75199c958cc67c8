//! `synapse-link-driver`: the agent side of the link (`synapse_link::client`, the same code
//! the agent runs) fed with synthetic telemetry, as one process per simulated agent. It
//! records `--batches` batches in total across restarts (its outbox remembers how many it
//! already recorded), waits until the hub acknowledged all of them, prints its outbox
//! counters as JSON and exits; it exits non-zero if that takes longer than `--timeout`.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use anyhow::{Context, bail};
use clap::Parser;
use synapse_link::{
    client::{self, AgentIdentity, LinkConfig, LinkStatus},
    outbox::Outbox,
};
use synapse_proto::link::v1::{FunctionInterval, Tier};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "synapse-link-driver",
    about = "Drive the agent link with synthetic telemetry"
)]
struct Cli {
    #[arg(long)]
    hub: String,
    #[arg(long, default_value = "synapse-hub")]
    server_name: String,
    #[arg(long)]
    ca: PathBuf,
    #[arg(long)]
    cert: PathBuf,
    #[arg(long)]
    key: PathBuf,
    /// sled directory of the agent (its outbox).
    #[arg(long)]
    db: PathBuf,
    #[arg(long)]
    agent_id: String,
    /// edge, regional or cloud.
    #[arg(long)]
    tier: String,
    /// `KEY=VALUE` label (repeatable).
    #[arg(long)]
    label: Vec<String>,
    /// Batches to record in total, counting those recorded before a restart.
    #[arg(long)]
    batches: u64,
    /// Functions per batch; each interval counts `invocations` invocations and 1 cold start.
    #[arg(long, default_value_t = 3)]
    functions: u32,
    #[arg(long, default_value_t = 3)]
    invocations: u64,
    /// Pause between batches, in milliseconds.
    #[arg(long, default_value_t = 20)]
    interval_ms: u64,
    /// Heartbeat interval, in milliseconds.
    #[arg(long, default_value_t = 500)]
    heartbeat_ms: u64,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
}

fn tier(name: &str) -> anyhow::Result<Tier> {
    Ok(match name {
        "edge" => Tier::Edge,
        "regional" => Tier::Regional,
        "cloud" => Tier::Cloud,
        other => bail!("tier {other:?} is not edge, regional or cloud"),
    })
}

fn batch(cli: &Cli, now_ms: i64) -> Vec<FunctionInterval> {
    (0..cli.functions)
        .map(|i| FunctionInterval {
            function: format!("fn-{i}"),
            start_unix_ms: now_ms,
            interval_ms: cli.interval_ms as u32,
            invocations: cli.invocations,
            cold_starts: 1,
            instance_exits: 0,
            cold_start_bounds_s: vec![0.05, 0.25, 1.0],
            cold_start_counts: vec![0, 1, 0],
            cold_start_sum_s: 0.1,
            idle_instance_s: 0.0,
            ..Default::default()
        })
        .collect()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let labels: BTreeMap<String, String> = cli
        .label
        .iter()
        .map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .with_context(|| format!("label {l:?} is not KEY=VALUE"))
        })
        .collect::<anyhow::Result<_>>()?;
    let identity = AgentIdentity {
        id: cli.agent_id.clone(),
        tier: tier(&cli.tier)?,
        labels,
        version: env!("CARGO_PKG_VERSION").into(),
        capacity: client::host_capacity(),
        gateway: String::new(),
    };
    let config = LinkConfig {
        hub: cli.hub.clone(),
        server_name: cli.server_name.clone(),
        ca: cli.ca.clone(),
        cert: cli.cert.clone(),
        key: cli.key.clone(),
        heartbeat_interval: Duration::from_millis(cli.heartbeat_ms),
        reconnect_initial: Duration::from_millis(50),
        reconnect_max: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(5),
        ..LinkConfig::default()
    };
    let db = synapse_db::open(&cli.db)?;
    let already = Outbox::open(&db, config.outbox_max_batches)?
        .stats()?
        .pushed;

    let (batches_tx, batches_rx) = mpsc::channel(64);
    let (status_tx, mut status) = watch::channel(LinkStatus::default());
    let shutdown = CancellationToken::new();
    let link = tokio::spawn(client::run_reporting(
        config,
        identity,
        db,
        batches_rx,
        shutdown.clone(),
        status_tx,
    ));

    let deadline = tokio::time::Instant::now() + Duration::from_secs(cli.timeout);
    let work = async {
        for _ in already..cli.batches {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
            batches_tx
                .send(batch(&cli, now))
                .await
                .context("link stopped")?;
            tokio::time::sleep(Duration::from_millis(cli.interval_ms)).await;
        }
        status
            .wait_for(|s| s.outbox.pushed >= cli.batches && s.outbox.pending == 0)
            .await
            .context("link stopped")?;
        anyhow::Ok(())
    };
    let outcome = tokio::time::timeout_at(deadline, work).await;
    let last = status.borrow().clone();
    shutdown.cancel();
    link.await.context("link task")??;
    println!(
        "{}",
        serde_json::json!({
            "agent_id": cli.agent_id,
            "pushed": last.outbox.pushed,
            "acked": last.outbox.acked,
            "dropped": last.outbox.dropped,
            "pending": last.outbox.pending,
            "connections": last.connections,
        })
    );
    match outcome {
        Ok(result) => result,
        Err(_) => bail!("timed out after {}s: {:?}", cli.timeout, last),
    }
}
