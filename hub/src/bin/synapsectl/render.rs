//! How `synapsectl` prints: aligned tables for people, JSON for machines. Tiers and health
//! are printed by name.

use serde_json::{Value, json};
use synapse_proto::{
    console::v1::{Agent, FunctionStatsResponse, FunctionSummary, Health},
    link::v1::Tier,
};

pub fn tier_name(tier: i32) -> &'static str {
    match Tier::try_from(tier) {
        Ok(Tier::Edge) => "edge",
        Ok(Tier::Regional) => "regional",
        Ok(Tier::Cloud) => "cloud",
        _ => "unspecified",
    }
}

pub fn health_name(health: i32) -> &'static str {
    match Health::try_from(health) {
        Ok(Health::Healthy) => "healthy",
        Ok(Health::Stale) => "stale",
        Ok(Health::Offline) => "offline",
        _ => "unknown",
    }
}

/// Columns padded to their widest cell.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        padded.join("  ").trim_end().to_owned() + "\n"
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out += &line(row.iter().map(String::as_str).collect());
    }
    out
}

fn bytes(n: u64) -> String {
    const GIB: f64 = (1u64 << 30) as f64;
    format!("{:.1}GiB", n as f64 / GIB)
}

fn ago(unix_ms: i64) -> String {
    if unix_ms <= 0 {
        return "never".into();
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    format!("{:.1}s ago", (now - unix_ms).max(0) as f64 / 1e3)
}

pub fn agents_table(agents: &[Agent]) -> String {
    let rows: Vec<Vec<String>> = agents
        .iter()
        .map(|a| {
            let capacity = a.capacity.unwrap_or_default();
            let labels: Vec<String> = a.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            vec![
                a.agent_id.clone(),
                tier_name(a.tier).into(),
                health_name(a.health).into(),
                a.version.clone(),
                capacity.cpus.to_string(),
                bytes(capacity.memory_bytes),
                format!("{:.2}ms", a.rtt_ms),
                ago(a.last_seen_unix_ms),
                a.batches_accepted.to_string(),
                a.invocations.to_string(),
                a.intervals_refused.to_string(),
                format!("{} ({}ms)", a.outbox_pending, a.outbox_lag_ms),
                a.outbox_dropped.to_string(),
                labels.join(","),
            ]
        })
        .collect();
    table(
        &[
            "AGENT",
            "TIER",
            "HEALTH",
            "VERSION",
            "CPUS",
            "MEMORY",
            "RTT",
            "LAST SEEN",
            "BATCHES",
            "INVOCATIONS",
            "REFUSED",
            "OUTBOX (LAG)",
            "DROPPED",
            "LABELS",
        ],
        &rows,
    )
}

pub fn agent_json(a: &Agent) -> Value {
    let capacity = a.capacity.unwrap_or_default();
    json!({
        "agent_id": a.agent_id,
        "tier": tier_name(a.tier),
        "health": health_name(a.health),
        "connected": a.connected,
        "labels": a.labels,
        "version": a.version,
        "capacity": { "cpus": capacity.cpus, "memory_bytes": capacity.memory_bytes },
        "last_seen_unix_ms": a.last_seen_unix_ms,
        "rtt_ms": a.rtt_ms,
        "link_version": a.link_version,
        "batches_accepted": a.batches_accepted,
        "invocations": a.invocations,
        "last_sequence": a.last_sequence,
        "intervals_refused": a.intervals_refused,
        "outbox_resets": a.outbox_resets,
        "outbox": { "pending": a.outbox_pending, "dropped": a.outbox_dropped, "lag_ms": a.outbox_lag_ms },
    })
}

pub fn functions_table(functions: &[FunctionSummary]) -> String {
    let rows: Vec<Vec<String>> = functions
        .iter()
        .map(|f| {
            vec![
                f.function.clone(),
                f.invocations.to_string(),
                f.cold_starts.to_string(),
                format!("{:.1}ms", f.cold_start_mean_s * 1e3),
                f.instance_exits.to_string(),
                format!("{:.1}", f.idle_instance_s),
                f.agents.to_string(),
            ]
        })
        .collect();
    table(
        &[
            "FUNCTION",
            "INVOCATIONS",
            "COLD STARTS",
            "COLD START MEAN",
            "EXITS",
            "IDLE S",
            "AGENTS",
        ],
        &rows,
    )
}

pub fn function_json(f: &FunctionSummary) -> Value {
    json!({
        "function": f.function,
        "invocations": f.invocations,
        "cold_starts": f.cold_starts,
        "cold_start_mean_s": f.cold_start_mean_s,
        "instance_exits": f.instance_exits,
        "idle_instance_s": f.idle_instance_s,
        "agents": f.agents,
        "last_interval_unix_ms": f.last_interval_unix_ms,
    })
}

pub fn stats_text(stats: &FunctionStatsResponse) -> String {
    let summary = stats.summary.clone().unwrap_or_default();
    let mut out = functions_table(std::slice::from_ref(&summary));
    let tiers: Vec<Vec<String>> = stats
        .by_tier
        .iter()
        .map(|t| {
            vec![
                tier_name(t.tier).into(),
                t.invocations.to_string(),
                t.cold_starts.to_string(),
                format!("{:.1}ms", t.cold_start_mean_s * 1e3),
            ]
        })
        .collect();
    out += "\n";
    out += &table(
        &["TIER", "INVOCATIONS", "COLD STARTS", "COLD START MEAN"],
        &tiers,
    );
    let agents: Vec<Vec<String>> = stats
        .by_agent
        .iter()
        .map(|a| {
            vec![
                a.agent_id.clone(),
                tier_name(a.tier).into(),
                a.invocations.to_string(),
                a.cold_starts.to_string(),
            ]
        })
        .collect();
    out += "\n";
    out += &table(&["AGENT", "TIER", "INVOCATIONS", "COLD STARTS"], &agents);
    if !stats.cold_start_bounds_s.is_empty() {
        let buckets: Vec<Vec<String>> = stats
            .cold_start_bounds_s
            .iter()
            .zip(&stats.cold_start_counts)
            .map(|(bound, count)| {
                let bucket = if *bound == f64::MAX {
                    "above".to_owned()
                } else {
                    format!("<= {bound:.3}s")
                };
                vec![bucket, count.to_string()]
            })
            .collect();
        out += "\n";
        out += &table(&["COLD START", "COUNT"], &buckets);
    }
    out
}

pub fn stats_json(stats: &FunctionStatsResponse) -> Value {
    let summary = stats.summary.clone().unwrap_or_default();
    json!({
        "summary": function_json(&summary),
        "cold_start_histogram": {
            "bounds_s": stats.cold_start_bounds_s,
            "counts": stats.cold_start_counts,
        },
        "by_tier": stats.by_tier.iter().map(|t| json!({
            "tier": tier_name(t.tier),
            "invocations": t.invocations,
            "cold_starts": t.cold_starts,
            "cold_start_mean_s": t.cold_start_mean_s,
        })).collect::<Vec<_>>(),
        "by_agent": stats.by_agent.iter().map(|a| json!({
            "agent_id": a.agent_id,
            "tier": tier_name(a.tier),
            "invocations": a.invocations,
            "cold_starts": a.cold_starts,
            "cold_start_sum_s": a.cold_start_sum_s,
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_columns_are_aligned() {
        let text = table(&["A", "BB"], &[vec!["long".into(), "x".into()]]);
        assert_eq!(text, "A     BB\nlong  x\n");
    }
}
