//! A hub killed with SIGKILL in the middle of a round loses no gradient it received and
//! counts none twice: two of three agents answer, the hub is killed and restarted on the same
//! store, the two agents send their answers again (as an agent does when it is unsure they
//! arrived), and the third answers. The round closes with exactly the three gradients: the
//! repeats are refused as duplicates, and the new version's update is the one the three
//! gradients make (a lost or doubled gradient would change it).

mod support;

use std::{collections::BTreeMap, path::Path, time::Duration};

use serde_json::Value;
use support::{Hub, Pki, run_ok, wait_for};
use synapse_link::client::{AgentIdentity, ControlChannels, LinkConfig, run_with_control};
use synapse_proto::link::v1::{Capacity, GradientReport, RoundOpen, Tier, frame::Body};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

const LEARNING_RATE: f64 = 0.5;

/// The agents' gradients (six weights) and sample counts: distinct, so that any change in
/// which were counted changes the update.
fn gradient(i: usize) -> (Vec<f32>, u64) {
    let g = match i {
        0 => vec![1.0, 0.0, 0.0, 2.0, 0.0, 0.0],
        1 => vec![0.0, 3.0, 0.0, 0.0, 1.0, 0.0],
        _ => vec![0.0, 0.0, 5.0, 0.0, 0.0, 4.0],
    };
    (g, [10, 30, 60][i])
}

fn rounds(hub: &Hub, pki: &Pki) -> Vec<Value> {
    let out = run_ok(
        hub.ctl(pki, "operator")
            .args(["rounds", "list", "-o", "json"]),
    );
    serde_json::from_slice(&out.stdout).expect("rounds list prints JSON")
}

/// One agent's link; returns its queue to the hub and the round-open frames it receives.
fn agent(
    runtime: &tokio::runtime::Runtime,
    root: &Path,
    pki: &Pki,
    hub: &Hub,
    name: &str,
    shutdown: CancellationToken,
) -> (mpsc::Sender<Body>, mpsc::Receiver<RoundOpen>) {
    let (to_hub, to_hub_rx) = mpsc::channel(64);
    let (from_hub, mut received) = mpsc::channel::<Body>(64);
    let (rounds_tx, rounds_rx) = mpsc::channel(64);
    runtime.spawn(async move {
        while let Some(body) = received.recv().await {
            if let Body::RoundOpen(open) = body {
                let _ = rounds_tx.send(open).await;
            }
        }
    });
    let config = LinkConfig {
        hub: hub.link.clone(),
        ca: pki.ca(),
        cert: pki.cert(name),
        key: pki.key(name),
        heartbeat_interval: Duration::from_millis(300),
        // A killed hub sends no close: the agent notices by the silence.
        idle_timeout: Duration::from_secs(2),
        reconnect_initial: Duration::from_millis(100),
        reconnect_max: Duration::from_millis(500),
        ..LinkConfig::default()
    };
    let identity = AgentIdentity {
        id: name.into(),
        tier: Tier::Edge,
        labels: BTreeMap::new(),
        version: "test".into(),
        capacity: Capacity::default(),
        gateway: String::new(),
    };
    let outbox = synapse_db::open(&root.join(name)).unwrap();
    let channels = ControlChannels {
        to_hub: to_hub_rx,
        from_hub,
    };
    runtime.spawn(async move {
        let (_keep, batches) = mpsc::channel(1);
        let status = watch::channel(Default::default()).0;
        let _ = run_with_control(
            config, identity, outbox, batches, channels, shutdown, status,
        )
        .await;
        drop(_keep);
    });
    (to_hub, rounds_rx)
}

fn report(open: &RoundOpen, i: usize) -> Body {
    let (gradient, samples) = gradient(i);
    Body::GradientReport(GradientReport {
        round: open.round,
        model_version: open.model_version,
        gradient,
        samples,
        loss: 0.1 * (i + 1) as f64,
    })
}

#[test]
fn a_hub_killed_mid_round_loses_no_gradient_and_counts_none_twice() {
    let root = tempfile::tempdir().unwrap();
    let pki = Pki::init(root.path().join("pki"));
    pki.issue("hub", "synapse-hub");
    pki.issue("operator", "operator");
    let names = ["agent-0", "agent-1", "agent-2"];
    for name in names {
        pki.issue("agent", name);
    }
    let initial = root.path().join("initial.onnx");
    std::fs::write(&initial, synapse_hub::models::onnx::synthetic(&[4, 2], 0.1)).unwrap();
    let federation = format!(
        "\n[federation]\ninitial_model = {initial:?}\nround_interval = \"200ms\"\nround_timeout = \"60s\"\n\
         min_clients = 3\noptimizer = \"sgd-momentum\"\nmomentum = 0.0\nlearning_rate = {LEARNING_RATE}\n\
         clip_norm = 0.0\n"
    );
    let mut hub = Hub::start_with(root.path(), &pki, &federation);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let shutdown = CancellationToken::new();
    let mut agents: Vec<_> = names
        .iter()
        .map(|name| agent(&runtime, root.path(), &pki, &hub, name, shutdown.clone()))
        .collect();

    // Everyone gets round 1; two answer.
    let opens: Vec<RoundOpen> = agents
        .iter_mut()
        .map(|(_, rounds)| {
            runtime
                .block_on(async {
                    tokio::time::timeout(Duration::from_secs(20), rounds.recv()).await
                })
                .expect("round 1 opens")
                .expect("link up")
        })
        .collect();
    assert!(opens.iter().all(|o| o.round == 1 && o.model_version == 1));
    for (i, (to_hub, _)) in agents.iter().enumerate().take(2) {
        to_hub.try_send(report(&opens[i], i)).unwrap();
    }
    wait_for("two stored gradients", Duration::from_secs(20), || {
        let r = rounds(&hub, &pki);
        (r[0]["state"] == "open" && r[0]["accepted"] == 2).then_some(())
    });

    hub.kill();
    hub.spawn();

    // The two repeat their answers after the restart; the third answers now.
    wait_for("the agents back", Duration::from_secs(20), || {
        let agents = hub.agents(&pki);
        (agents.iter().filter(|a| a["connected"] == true).count() == 3).then_some(())
    });
    for (i, (to_hub, _)) in agents.iter().enumerate().take(2) {
        to_hub.try_send(report(&opens[i], i)).unwrap();
    }
    agents[2].0.try_send(report(&opens[2], 2)).unwrap();

    // The two resent gradients are refused: as duplicates while the round is open, or as
    // late when the third agent's answer closed it first (the connections race, so a late
    // refusal may be counted on the round after it closed).
    let refused = |r: &Value, why: &str| r["refused"][why].as_u64().unwrap_or(0);
    let closed = wait_for(
        "round 1 to close with both resends counted",
        Duration::from_secs(30),
        || {
            rounds(&hub, &pki).into_iter().find(|r| {
                r["round"] == 1
                    && r["state"] == "closed"
                    && refused(r, "duplicate") + refused(r, "late") >= 2
            })
        },
    );
    assert_eq!(closed["accepted"], 3, "{closed}");
    assert_eq!(
        refused(&closed, "duplicate") + refused(&closed, "late"),
        2,
        "{closed}"
    );
    assert_eq!(closed["produced_version"], 2, "{closed}");
    let loss = (0.1 * 10.0 + 0.2 * 30.0 + 0.3 * 60.0) / 100.0;
    assert!(
        (closed["loss"].as_f64().unwrap() - loss).abs() < 1e-9,
        "{closed}"
    );

    // The update is exactly lr × the sample-weighted mean of the three gradients.
    let out = run_ok(
        hub.ctl(&pki, "operator")
            .args(["models", "show", "2", "-o", "json"]),
    );
    let model: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut mean = [0.0f64; 6];
    for i in 0..3 {
        let (g, samples) = gradient(i);
        for (m, v) in mean.iter_mut().zip(g) {
            *m += f64::from(v) * samples as f64 / 100.0;
        }
    }
    let expected = LEARNING_RATE * mean.iter().map(|m| m * m).sum::<f64>().sqrt();
    let update = model["metrics"]["update_norm"].as_f64().unwrap();
    assert!(
        (update - expected).abs() < 1e-6,
        "update {update}, expected {expected}"
    );
    assert_eq!(model["metrics"]["clients"], 3.0);
    assert_eq!(model["metrics"]["samples"], 100.0);
    assert_eq!(model["parent"], 1);

    shutdown.cancel();
    drop(agents);
    runtime.shutdown_timeout(Duration::from_secs(5));
    hub.kill();
}
