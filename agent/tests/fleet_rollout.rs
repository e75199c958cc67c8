//! Fleet rollouts end to end: a hub and four real agents in three tiers (two edge, one
//! regional, one cloud) on loopback, driven with `synapsectl rollouts` while a background
//! client keeps invoking `fn-a` through every agent's gateway.
//!
//! One test walks the phases in order, each starting from what the previous one left: a good
//! version goes through every step; a version whose function answers 500 is rolled back at
//! the canary step by the error-rate gate; a version the agents cannot apply is refused with
//! the reason and rolled back by the agent-health gate; pause holds a step, resume continues, promote
//! finishes, abort restores; a restarted agent runs what it was told; a hub restart
//! mid-rollout resumes at the same step; an agent away during a rollout catches up when it
//! returns; a settings rollout changes the pools' bounds live. Runs as root.

mod common;
mod rollout_fleet;

use std::time::Duration;

use common::*;
use rollout_fleet::*;

#[test]
fn rollouts_step_through_the_fleet_and_roll_back_a_failing_version() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    certs(d);
    let (link, metrics) = (free_ports(1), free_ports(1));
    let fleet = Fleet {
        dir: d.to_path_buf(),
        console: free_ports(1),
    };
    let mut hub = fleet.start_hub(link, metrics);
    let mut agents: Vec<Agent> = AGENTS
        .iter()
        .map(|(id, tier)| start_agent(d, id, tier, link))
        .collect();
    agents[0].wait_until("every agent connected to the hub", |_| {
        let listed = fleet.ctl(&["agents"]);
        listed
            .as_array()
            .is_some_and(|l| l.len() == 4 && l.iter().all(|a| a["connected"] == true))
    });
    let traffic = Traffic::start(agents.iter().map(|a| a.gateway).collect());

    // A good version: canaries (one per tier), then everyone.
    let id = fleet.start("2", "\"--work-ms\", \"1\"", "3s");
    let canary = fleet.wait(&id, "the canary step", |s| s["state"] == "progressing");
    assert_eq!(canary["updated"], 3, "one host per tier: {canary:#}");
    let done = fleet.wait(&id, "the good version everywhere", |s| {
        s["state"] == "succeeded" && all_running(s, "2")
    });
    assert_eq!(
        events(&done),
        [
            ("started".into(), 0),
            ("step_passed".into(), 0),
            ("step_passed".into(), 1),
            ("succeeded".into(), 1)
        ]
    );
    assert_eq!(done["started_by"], "ops", "the operator certificate's name");
    let gates = &done["history"][1]["gates"];
    assert!(
        gates
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["gate"] == "error_rate" && g["passed"] == true),
        "{gates:#}"
    );
    let p99 = gates
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["gate"] == "p99_latency_s")
        .unwrap_or_else(|| panic!("p99 judged at the canary step: {gates:#}"));
    assert_eq!(p99["passed"], true, "{p99:#}");
    assert!(
        p99["baseline"].as_f64().unwrap() > 0.0,
        "compared with the host not yet updated: {p99:#}"
    );

    // A version whose function answers 500: rolled back at the canary step.
    let id = fleet.start("3", "\"--fail-rate\", \"1.0\"", "3s");
    let back = fleet.wait(&id, "the failing version rolled back", |s| {
        s["state"] == "rolled back"
    });
    let failed = back["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "step_failed")
        .unwrap_or_else(|| panic!("no failed step: {back:#}"))
        .clone();
    assert_eq!(failed["step"], 0, "the canary step");
    let gate = failed["gates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["passed"] == false)
        .unwrap()
        .clone();
    assert_eq!(gate["gate"], "error_rate", "{failed:#}");
    assert!(
        gate["updated"].as_f64().unwrap() > gate["threshold"].as_f64().unwrap(),
        "{gate:#}"
    );
    assert_eq!(gate["baseline"].as_f64(), Some(0.0), "{gate:#}");
    let back = fleet.wait(&id, "the canaries back on version 2", |s| {
        all_running(s, "2")
    });
    assert_eq!(back["state"], "rolled back");
    for a in &agents {
        assert_eq!(a.invoke("fn-a", "", b"x").status, 200, "served again");
    }
    let shown = fleet.ctl_text(&["rollouts", "status", &id, "--watch"]);
    assert!(
        shown.contains("rolled back") && shown.contains("FAIL error_rate"),
        "an ended rollout is shown once, with the failed gate:\n{shown}"
    );
    let busy = fleet.ctl_text(&["rollouts", "resume", &id]);
    assert!(busy.contains("cannot resume"), "{busy}");

    // A version the agents cannot apply: they say why, keep version 2, and the step fails.
    let id = fleet.start_spec(
        "3b",
        "name = \"fn-a\"\nversion = \"3b\"\ncommand = \"/nonexistent/fn-a\"\n",
        "2s",
    );
    let refused = fleet.wait(&id, "the unappliable version rolled back", |s| {
        s["state"] == "rolled back"
    });
    let failed = refused["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "step_failed")
        .unwrap_or_else(|| panic!("no failed step: {refused:#}"))
        .clone();
    let gate = &failed["gates"][0];
    assert_eq!(
        (gate["gate"].as_str(), gate["passed"].as_bool()),
        (Some("agent_health"), Some(false))
    );
    assert_eq!(
        gate["updated"].as_f64(),
        Some(3.0),
        "three canaries refused: {gate:#}"
    );
    assert!(
        gate["detail"].as_str().unwrap().contains("does not exist"),
        "{gate:#}"
    );
    assert!(all_running(&refused, "2"), "{refused:#}");

    // Pause holds the step; resume continues; promote finishes at once.
    let id = fleet.start("4", "", "2s");
    let paused = fleet.ctl(&["rollouts", "pause", &id, "--reason", "look first"]);
    assert_eq!(paused[0]["state"], "paused", "{paused:#}");
    std::thread::sleep(Duration::from_secs(3));
    let held = fleet.status(&id);
    assert_eq!(
        (held["state"].as_str(), held["step"].as_u64()),
        (Some("paused"), Some(0))
    );
    let resumed = fleet.ctl(&["rollouts", "resume", "fn-a"]);
    assert_eq!(resumed[0]["state"], "progressing", "{resumed:#}");
    let promoted = fleet.ctl(&["rollouts", "promote", &id, "--reason", "hotfix"]);
    assert_eq!(promoted[0]["state"], "succeeded", "{promoted:#}");
    fleet.wait(&id, "the promoted version everywhere", |s| {
        all_running(s, "4")
    });

    // A restarted agent runs the version it was told, from its own store.
    let (edge_id, edge_tier) = AGENTS[1];
    let edge = agents.remove(1);
    edge.kill9();
    let edge = start_agent(d, edge_id, edge_tier, link);
    assert!(
        edge.log().contains("restored the version rollouts applied"),
        "{}",
        edge.log()
    );
    agents.insert(1, edge);
    traffic.set_gateways(agents.iter().map(|a| a.gateway).collect());
    fleet.wait(&id, "the restarted agent reporting version 4", |s| {
        all_running(s, "4")
    });

    // Abort: the updated hosts go back to the version before.
    let id = fleet.start("5", "", "1h");
    fleet.wait(&id, "the canaries on version 5", |s| {
        hosts_running(s).iter().filter(|(_, v)| v == "5").count() == 3
    });
    let aborted = fleet.ctl(&["rollouts", "abort", &id, "--reason", "wrong build"]);
    assert_eq!(aborted[0]["state"], "aborted", "{aborted:#}");
    fleet.wait(&id, "everyone back on version 4", |s| all_running(s, "4"));

    // A hub restart mid-rollout resumes at the same step, and an agent that was away during
    // the rollout catches up to its version when it returns.
    let (away_id, away_tier) = AGENTS[1];
    let away = agents.remove(1);
    assert!(away.stop());
    traffic.set_gateways(agents.iter().map(|a| a.gateway).collect());
    let id = fleet.start("6", "", "6s");
    fleet.wait(&id, "the second step", |s| s["step"] == 1);
    hub.stop();
    hub = fleet.start_hub(link, metrics);
    let resumed = fleet.wait(&id, "the restarted hub's console", |s| s.is_object());
    assert_eq!(resumed["step"], 1, "{resumed:#}");
    assert_eq!(resumed["state"], "progressing", "{resumed:#}");
    let done = fleet.wait(&id, "the rollout finished after the restart", |s| {
        s["state"] == "succeeded"
    });
    assert_eq!(
        events(&done)
            .iter()
            .filter(|(e, _)| e == "step_passed")
            .count(),
        2
    );
    let back = start_agent(d, away_id, away_tier, link);
    agents.insert(1, back);
    fleet.wait(&id, "the returning agent on version 6", |s| {
        all_running(s, "6")
    });
    assert_eq!(agents[1].invoke("fn-a", "", b"x").status, 200);

    // Live settings: fn-a's pools keep two warm instances on every agent.
    let settings = d.join("settings-s1.toml");
    std::fs::write(&settings, "[pools.fn-a]\nmin_warm = 2\n").unwrap();
    let started = fleet.ctl(&[
        "rollouts",
        "start",
        "settings",
        "--version",
        "s1",
        "--payload",
        settings.to_str().unwrap(),
        "--steps",
        "1/tier,100%",
        "--bake",
        "2s",
    ]);
    let id = started[0]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("settings refused: {started}"))
        .to_owned();
    fleet.wait(&id, "the settings everywhere", |s| {
        s["state"] == "succeeded" && all_running(s, "s1")
    });
    for a in &agents {
        a.wait_until("two warm instances of fn-a", |a| {
            a.metric("synapse_warm_instances{function=\"fn-a\"}") == Some(2.0)
        });
    }

    let history = fleet.ctl_text(&["rollouts", "history", "fn-a"]);
    assert_eq!(
        history.lines().filter(|l| l.starts_with("fn-a-")).count(),
        6,
        "{history}"
    );
    assert!(
        history.contains("aborted") && history.contains("succeeded"),
        "{history}"
    );

    drop(traffic);
    for a in agents {
        assert!(a.stop());
    }
    drop(hub);
}
