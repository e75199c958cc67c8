//! `synapsectl placement show|explain FUNCTION|history`: the hub's placement plans, as tables
//! or `-o json`.

use clap::Subcommand;
use serde_json::{Value, json};
use synapse_proto::console::v1::{
    ExplainPlacementRequest, PlacedFunction, PlacementExplanation, PlacementHistoryRequest,
    PlacementPlan, ShowPlacementRequest, placement_client::PlacementClient,
};

use crate::{
    Output,
    console::{Connection, print_json, status},
    render::{table, tier_name},
};

#[derive(Subcommand)]
pub enum PlacementCommand {
    /// The plan in force: which hosts keep each function warm, with what share.
    Show,
    /// Why FUNCTION is where it is: its inputs and the objective on each tier.
    Explain { function: String },
    /// Earlier plans, newest first.
    History {
        /// Plans to list.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
}

fn where_json(f: &PlacedFunction) -> Value {
    json!({
        "function": f.function,
        "hosts": f.hosts.iter().map(|h| json!({
            "agent_id": h.agent_id, "tier": tier_name(h.tier), "share": h.share,
        })).collect::<Vec<_>>(),
        "objective": f.objective,
        "moved": f.moved,
        "for_capacity": f.for_capacity,
    })
}

fn plan_json(p: &PlacementPlan) -> Value {
    json!({
        "version": p.version,
        "created_unix_ms": p.created_unix_ms,
        "reason": p.reason,
        "objective": p.objective,
        "moved": p.moved,
        "held_back": p.held_back,
        "over_cap": p.over_cap,
        "solve_ms": p.solve_ms,
        "functions": p.functions.iter().map(where_json).collect::<Vec<_>>(),
    })
}

fn explain_json(e: &PlacementExplanation) -> Value {
    json!({
        "version": e.version,
        "placed": e.placed.as_ref().map(where_json),
        "forecast_per_s": e.forecast_per_s,
        "execution_s": e.execution_s,
        "memory_bytes": e.memory_bytes,
        "cold_start_s": e.cold_start_s,
        "instances": e.instances,
        "tiers": e.tiers.iter().map(|t| json!({
            "tier": tier_name(t.tier), "agent_id": t.agent_id,
            "user_latency": t.user_latency, "resource_utilization": t.resource_utilization,
            "cost": t.cost, "total": t.total, "free_bytes": t.free_bytes,
        })).collect::<Vec<_>>(),
        "cold_total": e.cold_total,
        "summary": e.summary,
    })
}

fn hosts_text(f: &PlacedFunction) -> String {
    if f.hosts.is_empty() {
        return "cold (warm nowhere)".into();
    }
    f.hosts
        .iter()
        .map(|h| {
            format!(
                "{} ({}) {:.0}%",
                h.agent_id,
                tier_name(h.tier),
                h.share * 100.0
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn header(p: &PlacementPlan) -> String {
    let over_cap = if p.over_cap > 0 {
        format!(" ({} over the cap, forced by capacity)", p.over_cap)
    } else {
        String::new()
    };
    format!(
        "plan {} ({}): objective {:.6}/s, {} moved{over_cap}, {} held back, solved in {:.1} ms\n",
        p.version, p.reason, p.objective, p.moved, p.held_back, p.solve_ms
    )
}

pub async fn run(
    connection: &Connection,
    output: Output,
    command: PlacementCommand,
) -> anyhow::Result<()> {
    let mut client = PlacementClient::new(connection.channel().await?);
    match command {
        PlacementCommand::Show => {
            let plan = client
                .show(ShowPlacementRequest {})
                .await
                .map_err(status("placement show"))?
                .into_inner();
            match output {
                Output::Json => print_json(&plan_json(&plan))?,
                Output::Table => {
                    print!("{}", header(&plan));
                    let rows: Vec<Vec<String>> = plan
                        .functions
                        .iter()
                        .map(|f| {
                            vec![
                                f.function.clone(),
                                hosts_text(f),
                                format!("{:.6}", f.objective),
                                match (f.moved, f.for_capacity) {
                                    (true, true) => "moved (capacity)",
                                    (true, false) => "moved",
                                    _ => "",
                                }
                                .into(),
                            ]
                        })
                        .collect();
                    print!(
                        "{}",
                        table(&["FUNCTION", "WARM ON", "OBJECTIVE/S", ""], &rows)
                    );
                }
            }
        }
        PlacementCommand::Explain { function } => {
            let e = client
                .explain(ExplainPlacementRequest { function })
                .await
                .map_err(status("placement explain"))?
                .into_inner();
            match output {
                Output::Json => print_json(&explain_json(&e))?,
                Output::Table => {
                    println!("{}", e.summary);
                    println!(
                        "demand {:.3}/s, execution {:.3} s, memory {} MB, cold start {:.3} s, {:.2} instances",
                        e.forecast_per_s,
                        e.execution_s,
                        e.memory_bytes / 1_000_000,
                        e.cold_start_s,
                        e.instances
                    );
                    let mut rows: Vec<Vec<String>> = e
                        .tiers
                        .iter()
                        .map(|t| {
                            vec![
                                tier_name(t.tier).into(),
                                t.agent_id.clone(),
                                format!("{:.6}", t.user_latency),
                                format!("{:.6}", t.resource_utilization),
                                format!("{:.6}", t.cost),
                                format!("{:.6}", t.total),
                                format!("{} MB", t.free_bytes / 1_000_000),
                            ]
                        })
                        .collect();
                    rows.push(vec![
                        "cold".into(),
                        "-".into(),
                        format!("{:.6}", e.cold_total),
                        "0".into(),
                        "0".into(),
                        format!("{:.6}", e.cold_total),
                        "-".into(),
                    ]);
                    let headers = [
                        "TIER",
                        "BEST HOST",
                        "LATENCY",
                        "UTILISATION",
                        "COST",
                        "TOTAL/S",
                        "FREE",
                    ];
                    print!("{}", table(&headers, &rows));
                }
            }
        }
        PlacementCommand::History { limit } => {
            let plans = client
                .history(PlacementHistoryRequest { limit })
                .await
                .map_err(status("placement history"))?
                .into_inner()
                .plans;
            match output {
                Output::Json => print_json(&plans.iter().map(plan_json).collect())?,
                Output::Table => {
                    for p in &plans {
                        print!("{}", header(p));
                    }
                }
            }
        }
    }
    Ok(())
}
