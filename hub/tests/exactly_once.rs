//! Telemetry arrives exactly once: three agents (edge, regional, cloud) report to a hub that
//! is killed with SIGKILL and restarted on the same store, while the edge agent is itself
//! killed with SIGKILL and restarted on its outbox. At the end, what the hub counted for each
//! agent equals what that agent recorded, and `synapsectl agents -o json` lists the three
//! agents with their tiers.

mod support;

use std::time::Duration;

use support::{Agent, Hub, Pki, wait_for};

const BATCHES: u64 = 300;
const FUNCTIONS: u64 = 3;
const INVOCATIONS_PER_INTERVAL: u64 = 3;

#[test]
fn telemetry_arrives_exactly_once_across_a_hub_restart_and_an_agent_kill() {
    let root = tempfile::tempdir().unwrap();
    let pki = Pki::init(root.path().join("pki"));
    pki.issue("hub", "synapse-hub");
    pki.issue("operator", "operator");
    let fleet = [
        ("edge-1", "edge"),
        ("regional-1", "regional"),
        ("cloud-1", "cloud"),
    ];
    for (id, _) in fleet {
        pki.issue("agent", id);
    }
    let mut hub = Hub::start(root.path(), &pki);
    let mut agents: Vec<Agent> = fleet
        .iter()
        .map(|(id, tier)| Agent::start(root.path(), &pki, &hub, id, tier, BATCHES, 10))
        .collect();

    wait_for(
        "a third of the batches before the hub restart",
        Duration::from_secs(60),
        || (hub.metric("synapse_hub_batches_accepted_total") >= BATCHES as f64).then_some(()),
    );
    hub.kill();
    std::thread::sleep(Duration::from_millis(300));
    hub.spawn();

    wait_for("batches after the restart", Duration::from_secs(60), || {
        (hub.metric("synapse_hub_batches_accepted_total") >= 60.0).then_some(())
    });
    agents[0].kill();
    agents[0].spawn(&pki, &hub);

    let recorded: Vec<serde_json::Value> = agents.iter_mut().map(Agent::finish).collect();
    for (agent, counters) in agents.iter().zip(&recorded) {
        assert_eq!(counters["pushed"], BATCHES, "{}: {counters}", agent.id);
        assert_eq!(counters["dropped"], 0, "{}: {counters}", agent.id);
        assert_eq!(counters["pending"], 0, "{}: {counters}", agent.id);
    }

    let listed = hub.agents(&pki);
    assert_eq!(listed.len(), 3, "{listed:?}");
    for (id, tier) in fleet {
        let agent = listed
            .iter()
            .find(|a| a["agent_id"] == id)
            .unwrap_or_else(|| panic!("{id} missing from {listed:?}"));
        assert_eq!(agent["tier"], tier);
        assert_eq!(agent["labels"]["tier"], tier);
        assert_eq!(agent["batches_accepted"], BATCHES, "{agent}");
        assert_eq!(agent["last_sequence"], BATCHES, "{agent}");
        assert_eq!(
            agent["invocations"],
            BATCHES * FUNCTIONS * INVOCATIONS_PER_INTERVAL,
            "{agent}"
        );
    }

    let output = support::run_ok(hub.ctl(&pki, "operator").args(["functions", "-o", "json"]));
    let functions: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(functions.len(), FUNCTIONS as usize);
    for function in &functions {
        assert_eq!(
            function["invocations"],
            3 * BATCHES * INVOCATIONS_PER_INTERVAL,
            "{function}"
        );
        assert_eq!(function["cold_starts"], 3 * BATCHES, "{function}");
        assert_eq!(function["agents"], 3);
    }
    assert!(hub.log().contains("agent connected"));

    // `--watch -o json` starts with the current state of every agent, one line each.
    let mut watch = hub
        .ctl(&pki, "operator")
        .args(["agents", "--watch", "-o", "json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = watch.stdout.take().unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut watched = std::collections::BTreeMap::new();
    while watched.len() < 3 {
        let line = lines
            .recv_timeout(Duration::from_secs(20))
            .expect("synapsectl --watch prints every agent");
        let agent: serde_json::Value = serde_json::from_str(&line).unwrap();
        watched.insert(
            agent["agent_id"].as_str().unwrap().to_owned(),
            agent["tier"].clone(),
        );
    }
    watch.kill().unwrap();
    watch.wait().unwrap();
    assert_eq!(watched["edge-1"], "edge");
    assert_eq!(watched["regional-1"], "regional");
    assert_eq!(watched["cloud-1"], "cloud");
}
