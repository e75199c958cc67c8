//! A worse forecaster is rolled back, end to end: a hub and four real agents in three tiers
//! (two edge, one regional, one cloud) on loopback, learning with the hub, their pools planned
//! by the forecast policy on the neural model alone, while a background client keeps invoking
//! `fn-a` through every gateway.
//!
//! The fleet first runs on the agents' own model (version 0) with a hub that has none. The
//! operator then gives the hub a first model version (`federation.initial_model`) whose output
//! is shifted far up — a model that forecasts badly — and restarts it. The version goes out
//! through the model rollout policy (a canary per tier, then everyone): the canaries forecast
//! with it, the intervals they report carry forecasts far from what came, the `forecast_error`
//! gate compares them with the host not yet updated and fails with its numbers, and the
//! canaries go back to their own model — which they report, and which makes their next
//! forecasts. Runs as root.

mod common;
mod rollout_fleet;

use common::*;
use rollout_fleet::*;
use serde_json::Value;
use synapse_agent::{forecast::neural::onnx, policy::live::BUILT_IN_MODEL};

/// The neural model alone makes the forecasts, so they are the model's.
const POLICY: &str = "max_instances = 2\n[policy]\nname = \"forecast(forecaster=mlp)\"\n";
/// The model rollout policy with a short bake; rounds never open (they would wait for a fifth
/// agent), so the only version is the configured one.
const HUB_MODELS: &str = "[rollouts.models]\nsteps = [\"1/tier\", \"100%\"]\nbake = \"8s\"\n\
                          [federation]\nmin_clients = 5\n";
const MODEL_VERSION: &str = "synapse_forecast_model_version{function=\"fn-a\"}";

/// The agents' own model with its output bias raised by 4: every forecast is about e⁴ ≈ 55
/// times (count + 1) of what the own model says.
fn worse_model() -> Vec<u8> {
    let mut model = onnx::decode(BUILT_IN_MODEL).expect("the built-in model decodes");
    let mut delta = vec![0.0; model.params().len()];
    *delta.last_mut().expect("weights") = 4.0;
    model.apply(&delta, 1.0);
    onnx::encode(&model)
}

/// Stops every agent with SIGTERM, also when the test fails half-way, so no instance or
/// cgroup is left behind.
struct Agents(Vec<Agent>);

impl Drop for Agents {
    fn drop(&mut self) {
        for agent in self.0.drain(..) {
            let _ = agent.stop();
        }
    }
}

fn failed_gate(status: &Value) -> (Value, Value) {
    let failed = status["history"]
        .as_array()
        .and_then(|h| h.iter().find(|e| e["event"] == "step_failed"))
        .unwrap_or_else(|| panic!("no failed step: {status:#}"))
        .clone();
    let gate = failed["gates"]
        .as_array()
        .and_then(|g| g.iter().find(|g| g["gate"] == "forecast_error"))
        .unwrap_or_else(|| panic!("the forecast gate was not judged: {failed:#}"))
        .clone();
    (failed, gate)
}

#[test]
fn a_model_that_forecasts_worse_is_rolled_back_by_the_forecast_gate() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    certs(d);
    let (link, metrics) = (free_ports(1), free_ports(1));
    let fleet = Fleet {
        dir: d.to_path_buf(),
        console: free_ports(1),
    };

    // The fleet on its own model; the hub has no model version yet, and learns the agents.
    let hub = fleet.start_hub_with(link, metrics, HUB_MODELS);
    let agents = Agents(
        AGENTS
            .iter()
            .map(|(id, tier)| {
                start_agent_with(d, id, tier, link, "reconnect_max = \"1s\"\n", POLICY)
            })
            .collect(),
    );
    let all = &agents.0;
    all[0].wait_until("every agent connected to the hub", |_| {
        let listed = fleet.ctl(&["agents"]);
        listed
            .as_array()
            .is_some_and(|l| l.len() == 4 && l.iter().all(|a| a["connected"] == true))
    });
    let _traffic = Traffic::start(all.iter().map(|a| a.gateway).collect());
    for a in all {
        a.wait_until("forecasts made by the agent's own model", |a| {
            a.metric(MODEL_VERSION) == Some(0.0)
        });
    }

    // The operator gives the hub its first model version: a worse one.
    let model = d.join("worse.onnx");
    std::fs::write(&model, worse_model()).unwrap();
    hub.stop();
    let _hub = fleet.start_hub_with(
        link,
        metrics,
        &format!(
            "{HUB_MODELS}initial_model = \"{}\"\n",
            model.to_str().unwrap()
        ),
    );
    let canary = fleet.wait("model-1", "the model's canary step", |s| {
        s["state"] == "progressing" && s["step"] == 0
    });
    let desired: Vec<(String, String)> = canary["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["agent_id"].as_str().unwrap().to_owned(),
                h["desired"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let canaries: Vec<&Agent> = all
        .iter()
        .zip(AGENTS)
        .filter(|(_, (id, _))| desired.iter().any(|(h, v)| h == id && v == "1"))
        .map(|(a, _)| a)
        .collect();
    assert_eq!(canaries.len(), 3, "one canary per tier: {canary:#}");
    let baseline = all
        .iter()
        .zip(AGENTS)
        .find(|(_, (id, _))| desired.iter().any(|(h, v)| h == id && v.is_empty()))
        .map(|(a, _)| a)
        .unwrap_or_else(|| panic!("a host not yet updated: {canary:#}"));
    for a in &canaries {
        a.wait_until("the canary forecasting with version 1", |a| {
            a.metric(MODEL_VERSION) == Some(1.0)
        });
    }

    // The gate compares the canaries' forecasts with the host not yet updated, and fails.
    let back = fleet.wait("model-1", "the worse model rolled back", |s| {
        s["state"] == "rolled back"
    });
    let (failed, gate) = failed_gate(&back);
    assert_eq!(failed["step"], 0, "the canary step: {failed:#}");
    assert_eq!(gate["passed"], false, "{failed:#}");
    let (updated, baseline_error, limit) = (
        gate["updated"].as_f64().unwrap(),
        gate["baseline"].as_f64().unwrap(),
        gate["threshold"].as_f64().unwrap(),
    );
    assert!(
        updated > limit && limit >= baseline_error,
        "the canaries' mean absolute error above the limit: {gate:#}"
    );
    assert!(
        failed["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("forecast_error: updated"),
        "the history says which gate failed, with its numbers: {failed:#}"
    );
    let forecasts: Vec<u64> = gate["detail"]
        .as_str()
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert!(
        forecasts.len() == 2 && forecasts.iter().all(|&n| n > 0),
        "forecasts of both groups judged: {gate:#}"
    );

    // The canaries go back to their own model: they report it, and forecast with it.
    let back = fleet.wait("model-1", "the canaries back on their own model", |s| {
        hosts_running(s)
            .iter()
            .filter(|(_, running)| running == "0")
            .count()
            == 3
    });
    assert_eq!(back["state"], "rolled back");
    for a in &canaries {
        a.wait_until("the canary forecasting with its own model again", |a| {
            a.metric(MODEL_VERSION) == Some(0.0)
        });
    }
    assert_eq!(
        baseline.metric(MODEL_VERSION),
        Some(0.0),
        "the host not updated never ran the worse model"
    );
    let models = fleet.ctl(&["models", "list"]);
    assert_eq!(models.as_array().map(Vec::len), Some(1), "{models:#}");
    let shown = fleet.ctl_text(&["rollouts", "history", "model"]);
    assert!(shown.contains("rolled back"), "{shown}");
}
