//! `synapsectl rollouts start|status|pause|resume|abort|promote|history`: drives the hub's
//! rollouts over the console, as tables or `-o json`; `status --watch` reprints every second
//! until the rollouts it shows have ended.

use std::{collections::HashMap, path::PathBuf, time::Duration};

use anyhow::{Context, bail};
use clap::Subcommand;
use serde_json::{Value, json};
use synapse_proto::{
    console::v1::{
        HistoryRequest, Rollout, RolloutRef, RolloutState, RolloutStatusRequest,
        StartRolloutRequest, rollouts_client::RolloutsClient,
    },
    link::v1::Tier,
};
use tonic::transport::Channel;

use crate::{Output, render};

#[derive(Subcommand)]
pub enum RolloutsCommand {
    /// Start a rollout of TARGET (a function name, "model" or "settings").
    Start {
        target: String,
        #[arg(long)]
        version: String,
        /// File with the function's spec (TOML of one function) or the agent settings (TOML).
        #[arg(long)]
        payload: Option<PathBuf>,
        /// Model versions: hex SHA-256 of the model file.
        #[arg(long, default_value = "")]
        sha256: String,
        /// Only agents of these tiers (edge, regional, cloud); repeatable.
        #[arg(long = "tier")]
        tiers: Vec<String>,
        /// Only agents with this label (KEY=VALUE); repeatable.
        #[arg(long = "label")]
        labels: Vec<String>,
        /// Only these agents; repeatable.
        #[arg(long = "host")]
        hosts: Vec<String>,
        /// Steps, comma-separated (e.g. 1/tier,10%,50%,100%); default: the hub's.
        #[arg(long, value_delimiter = ',')]
        steps: Vec<String>,
        /// Bake time per step (e.g. 5m); default: the hub's.
        #[arg(long)]
        bake: Option<String>,
        /// Why (kept in the history).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Active rollouts, or one rollout (by id or target) with its hosts and history.
    Status {
        rollout: Option<String>,
        /// Reprint every second until the rollouts shown have ended.
        #[arg(long)]
        watch: bool,
    },
    /// Hold the current step.
    Pause {
        rollout: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Continue a paused rollout; the current step bakes again.
    Resume {
        rollout: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Stop, and send the updated hosts back to their previous versions.
    Abort {
        rollout: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Take the version to every selected host now, without further gates.
    Promote {
        rollout: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Past and present rollouts, newest first.
    History {
        target: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
}

fn tier(name: &str) -> anyhow::Result<i32> {
    Ok(match name {
        "edge" => Tier::Edge,
        "regional" => Tier::Regional,
        "cloud" => Tier::Cloud,
        other => bail!("tier {other:?} is not edge, regional or cloud"),
    } as i32)
}

fn status(what: &'static str) -> impl Fn(tonic::Status) -> anyhow::Error {
    move |e| anyhow::anyhow!("{what}: {}: {}", e.code(), e.message())
}

fn state_name(state: i32) -> &'static str {
    match RolloutState::try_from(state) {
        Ok(RolloutState::Pending) => "pending",
        Ok(RolloutState::Progressing) => "progressing",
        Ok(RolloutState::Paused) => "paused",
        Ok(RolloutState::Succeeded) => "succeeded",
        Ok(RolloutState::Aborted) => "aborted",
        Ok(RolloutState::RolledBack) => "rolled back",
        _ => "unknown",
    }
}

fn active(r: &Rollout) -> bool {
    matches!(
        RolloutState::try_from(r.state),
        Ok(RolloutState::Pending | RolloutState::Progressing | RolloutState::Paused)
    )
}

fn step_text(r: &Rollout) -> String {
    let step = r.steps.get(r.step as usize).cloned().unwrap_or_default();
    format!("{}/{} ({step})", r.step + 1, r.steps.len())
}

fn list_table(rollouts: &[Rollout]) -> String {
    let rows: Vec<Vec<String>> = rollouts
        .iter()
        .map(|r| {
            vec![
                r.id.clone(),
                r.target.clone(),
                r.version.clone(),
                state_name(r.state).into(),
                step_text(r),
                format!("{}/{}", r.updated, r.hosts.len()),
                r.started_by.clone(),
            ]
        })
        .collect();
    render::table(
        &[
            "ID",
            "TARGET",
            "VERSION",
            "STATE",
            "STEP",
            "UPDATED",
            "STARTED BY",
        ],
        &rows,
    )
}

fn detail_text(r: &Rollout) -> String {
    let mut out = list_table(std::slice::from_ref(r));
    out.push('\n');
    let hosts: Vec<Vec<String>> = r
        .hosts
        .iter()
        .map(|h| {
            vec![
                h.agent_id.clone(),
                h.desired.clone(),
                h.running.clone(),
                if h.connected { "yes" } else { "no" }.into(),
                h.error.clone(),
            ]
        })
        .collect();
    out.push_str(&render::table(
        &["HOST", "DESIRED", "RUNNING", "CONNECTED", "ERROR"],
        &hosts,
    ));
    out.push_str("\nHISTORY\n");
    for e in &r.history {
        out.push_str(&format!(
            "  step {} {} by {}: {}\n",
            e.step + 1,
            e.event,
            e.who,
            e.detail
        ));
        for g in &e.gates {
            out.push_str(&format!(
                "    {} {}: updated {:.4} baseline {:.4} limit {:.4} {}\n",
                if g.passed { "pass" } else { "FAIL" },
                g.gate,
                g.updated,
                g.baseline,
                g.threshold,
                g.detail
            ));
        }
    }
    out
}

fn rollout_json(r: &Rollout) -> Value {
    json!({
        "id": r.id, "target": r.target, "version": r.version, "state": state_name(r.state),
        "step": r.step, "steps": r.steps, "bake_ms": r.bake_ms, "started_by": r.started_by,
        "started_unix_ms": r.started_unix_ms, "step_started_unix_ms": r.step_started_unix_ms,
        "updated": r.updated,
        "hosts": r.hosts.iter().map(|h| json!({
            "agent_id": h.agent_id, "desired": h.desired, "running": h.running,
            "error": h.error, "connected": h.connected,
        })).collect::<Vec<_>>(),
        "history": r.history.iter().map(|e| json!({
            "unix_ms": e.unix_ms, "event": e.event, "step": e.step, "who": e.who,
            "detail": e.detail,
            "gates": e.gates.iter().map(|g| json!({
                "gate": g.gate, "passed": g.passed, "updated": g.updated,
                "baseline": g.baseline, "threshold": g.threshold, "detail": g.detail,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

fn print(output: Output, rollouts: &[Rollout], detailed: bool) -> anyhow::Result<()> {
    match output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&rollouts.iter().map(rollout_json).collect::<Vec<_>>())?
        ),
        Output::Table if detailed => {
            for r in rollouts {
                print!("{}", detail_text(r));
            }
        }
        Output::Table => print!("{}", list_table(rollouts)),
    }
    Ok(())
}

fn reference(rollout: String, reason: String) -> RolloutRef {
    RolloutRef {
        id: rollout,
        target: String::new(),
        reason,
    }
}

pub async fn run(channel: Channel, output: Output, command: RolloutsCommand) -> anyhow::Result<()> {
    let mut client = RolloutsClient::new(channel);
    let one = match command {
        RolloutsCommand::Start {
            target,
            version,
            payload,
            sha256,
            tiers,
            labels,
            hosts,
            steps,
            bake,
            reason,
        } => {
            let payload = match payload {
                Some(path) => std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?,
                None => String::new(),
            };
            let labels = labels
                .iter()
                .map(|l| match l.split_once('=') {
                    Some((k, v)) => Ok((k.to_owned(), v.to_owned())),
                    None => bail!("label {l:?} is not KEY=VALUE"),
                })
                .collect::<anyhow::Result<HashMap<_, _>>>()?;
            let bake_ms = match bake {
                Some(text) => {
                    let d: Duration = humantime_serde::re::humantime::parse_duration(&text)
                        .with_context(|| format!("bake {text:?}"))?;
                    u64::try_from(d.as_millis()).context("bake too long")?
                }
                None => 0,
            };
            let request = StartRolloutRequest {
                target,
                version,
                payload,
                sha256,
                tiers: tiers
                    .iter()
                    .map(|t| tier(t))
                    .collect::<anyhow::Result<_>>()?,
                labels,
                hosts,
                steps,
                bake_ms,
                reason,
            };
            client
                .start(request)
                .await
                .map_err(status("start rollout"))?
                .into_inner()
        }
        RolloutsCommand::Pause { rollout, reason } => client
            .pause(reference(rollout, reason))
            .await
            .map_err(status("pause"))?
            .into_inner(),
        RolloutsCommand::Resume { rollout, reason } => client
            .resume(reference(rollout, reason))
            .await
            .map_err(status("resume"))?
            .into_inner(),
        RolloutsCommand::Abort { rollout, reason } => client
            .abort(reference(rollout, reason))
            .await
            .map_err(status("abort"))?
            .into_inner(),
        RolloutsCommand::Promote { rollout, reason } => client
            .promote(reference(rollout, reason))
            .await
            .map_err(status("promote"))?
            .into_inner(),
        RolloutsCommand::History { target, limit } => {
            let list = client
                .history(HistoryRequest {
                    target: target.unwrap_or_default(),
                    limit,
                })
                .await
                .map_err(status("history"))?
                .into_inner();
            return print(output, &list.rollouts, false);
        }
        RolloutsCommand::Status { rollout, watch } => {
            let detailed = rollout.is_some();
            let request = RolloutStatusRequest {
                id: rollout.unwrap_or_default(),
                target: String::new(),
            };
            loop {
                let list = client
                    .status(request.clone())
                    .await
                    .map_err(status("rollout status"))?
                    .into_inner();
                if watch && output == Output::Table {
                    print!("\x1b[2J\x1b[H");
                }
                print(output, &list.rollouts, detailed)?;
                if !watch || !list.rollouts.iter().any(active) {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    print(output, std::slice::from_ref(&one), true)
}
