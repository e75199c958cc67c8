//! `synapsectl models list|show` and `synapsectl rounds list`: the hub's `Learning` console
//! service, as tables or `-o json`.

use anyhow::bail;
use clap::Subcommand;
use serde_json::{Value, json};
use synapse_proto::console::v1::{
    GetModelRequest, ListModelsRequest, ListRoundsRequest, ModelVersion, Round,
    learning_client::LearningClient,
};

use crate::{
    Command, Output,
    console::{Connection, print_json, status},
    render::table,
};

#[derive(Subcommand)]
pub enum ModelsCommand {
    /// Every registered version, oldest first.
    List,
    /// One version with all its metrics.
    Show { version: u64 },
}

#[derive(Subcommand)]
pub enum RoundsCommand {
    /// The most recent rounds, newest first.
    List {
        /// How many rounds.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

pub async fn run(connection: &Connection, output: Output, command: Command) -> anyhow::Result<()> {
    let mut client = LearningClient::new(connection.channel().await?);
    match command {
        Command::Models {
            command: ModelsCommand::List,
        } => {
            let models = client
                .list_models(ListModelsRequest {})
                .await
                .map_err(status("list models"))?
                .into_inner()
                .models;
            match output {
                Output::Table => print!("{}", models_table(&models)),
                Output::Json => print_json(&models.iter().map(model_json).collect())?,
            }
        }
        Command::Models {
            command: ModelsCommand::Show { version },
        } => {
            let model = client
                .get_model(GetModelRequest { version })
                .await
                .map_err(status("get model"))?
                .into_inner();
            match output {
                Output::Table => print!("{}", model_text(&model)),
                Output::Json => print_json(&model_json(&model))?,
            }
        }
        Command::Rounds {
            command: RoundsCommand::List { limit },
        } => {
            let rounds = client
                .list_rounds(ListRoundsRequest { limit })
                .await
                .map_err(status("list rounds"))?
                .into_inner()
                .rounds;
            match output {
                Output::Table => print!("{}", rounds_table(&rounds)),
                Output::Json => print_json(&rounds.iter().map(round_json).collect())?,
            }
        }
        _ => bail!("not a learning command"),
    }
    Ok(())
}

fn number(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.5}")
    } else {
        "-".into()
    }
}

fn time(unix_ms: i64) -> String {
    if unix_ms <= 0 {
        return "-".into();
    }
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(unix_ms as u64);
    humantime_serde::re::humantime::format_rfc3339_seconds(t).to_string()
}

fn models_table(models: &[ModelVersion]) -> String {
    let rows: Vec<Vec<String>> = models
        .iter()
        .map(|m| {
            vec![
                m.version.to_string(),
                m.sha256.chars().take(12).collect(),
                m.parent.to_string(),
                m.round.to_string(),
                number(m.training_loss),
                m.metrics
                    .get("evaluated_loss")
                    .map_or("-".into(), |v| number(*v)),
                m.size_bytes.to_string(),
                time(m.created_unix_ms),
            ]
        })
        .collect();
    table(
        &[
            "VERSION",
            "SHA256",
            "PARENT",
            "ROUND",
            "TRAIN LOSS",
            "EVAL LOSS",
            "BYTES",
            "CREATED",
        ],
        &rows,
    )
}

fn model_text(m: &ModelVersion) -> String {
    let mut text = format!(
        "version:       {}\nsha256:        {}\nparent:        {}\nround:         {}\ntraining loss: {}\nsize:          {} bytes\ncreated:       {}\nmetrics:\n",
        m.version,
        m.sha256,
        m.parent,
        m.round,
        number(m.training_loss),
        m.size_bytes,
        time(m.created_unix_ms)
    );
    let mut metrics: Vec<_> = m.metrics.iter().collect();
    metrics.sort_by(|a, b| a.0.cmp(b.0));
    for (name, value) in metrics {
        text.push_str(&format!("  {name}: {value}\n"));
    }
    text
}

fn finite(x: f64) -> Value {
    if x.is_finite() { json!(x) } else { Value::Null }
}

fn model_json(m: &ModelVersion) -> Value {
    let metrics: serde_json::Map<String, Value> = m
        .metrics
        .iter()
        .map(|(k, v)| (k.clone(), finite(*v)))
        .collect();
    json!({
        "version": m.version,
        "sha256": m.sha256,
        "parent": m.parent,
        "round": m.round,
        "training_loss": finite(m.training_loss),
        "metrics": metrics,
        "created_unix_ms": m.created_unix_ms,
        "size_bytes": m.size_bytes,
    })
}

fn refused_text(r: &Round) -> String {
    let mut refused: Vec<_> = r.refused.iter().collect();
    refused.sort();
    refused
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn rounds_table(rounds: &[Round]) -> String {
    let rows: Vec<Vec<String>> = rounds
        .iter()
        .map(|r| {
            vec![
                r.round.to_string(),
                r.state.clone(),
                r.model_version.to_string(),
                format!("{}/{}", r.accepted, r.invited),
                refused_text(r),
                if r.state == "closed" {
                    number(r.loss)
                } else {
                    "-".into()
                },
                match r.produced_version {
                    0 => "-".into(),
                    v => v.to_string(),
                },
                time(r.opened_unix_ms),
                r.note.clone(),
            ]
        })
        .collect();
    table(
        &[
            "ROUND", "STATE", "ON", "ANSWERED", "REFUSED", "LOSS", "PRODUCED", "OPENED", "NOTE",
        ],
        &rows,
    )
}

fn round_json(r: &Round) -> Value {
    let refused: serde_json::Map<String, Value> = r
        .refused
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    json!({
        "round": r.round,
        "state": r.state,
        "model_version": r.model_version,
        "opened_unix_ms": r.opened_unix_ms,
        "deadline_unix_ms": r.deadline_unix_ms,
        "ended_unix_ms": r.ended_unix_ms,
        "invited": r.invited,
        "accepted": r.accepted,
        "refused": refused,
        "loss": finite(r.loss),
        "produced_version": r.produced_version,
        "note": r.note,
    })
}
