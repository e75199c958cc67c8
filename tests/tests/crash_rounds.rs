//! Federated rounds and a fleet rollout finish once when the hub or an agent crashes in the
//! middle of them. A real `synapse-hub` runs in its own network namespace with federation on
//! (the agents' built-in forecaster as its first model, a round every few seconds that needs
//! all three agents) and three real `synapse-agent`s (edge, edge, cloud) in theirs, learning
//! from the traffic `synapse-agent drive` sends their sample functions.
//!
//! The hub is killed with SIGKILL while a round is open and restarted on its store; then an
//! agent is killed while a round is open and restarted on its store; each time a later round
//! closes with every agent's gradient. A rollout of the function every agent runs is started;
//! the hub is killed at its canary step and an agent at its second step, and the rollout
//! still ends `succeeded` with each step passed once and every host on the new version.
//! Afterwards no round took more gradients than it invited, every closed round produced one
//! model version and no version came from two rounds, and the books balance as in
//! `partitions` (see `fleet::ledger`). Runs as root (namespaces, eBPF, cgroups).

use std::time::{Duration, Instant};

use serde_json::Value;
use synapse_tests::{
    fleet::{Agent, Drive, DrivePlan, Hub, Pki, bin, ledger},
    netns::{End, Star},
    wait_for,
};

const AGENTS: [(&str, &str); 3] = [("edge-1", "edge"), ("edge-2", "edge"), ("cloud-1", "cloud")];
/// The function every agent runs, which the rollout updates.
const SHARED: &str = "fn-r";
const LIMIT: Duration = Duration::from_secs(60);
/// The agent whose link is cut to hold a round open.
const AWAY: usize = 2;

/// The hub's rollouts and federation. The gates are opened wide: they are not under test
/// here, and a model version rolled back because an agent was away at the end of its bake
/// would leave the fleet on a version the rounds do not take.
fn hub_config(model: &std::path::Path) -> String {
    format!(
        "[rollouts]\ntick = \"200ms\"\n\
         [rollouts.gates]\nmin_invocations = 5\nmax_apply_failures = 3\nmax_forecast_error_ratio = 1000.0\n\
         [rollouts.models]\nbake = \"2s\"\n\n\
         [federation]\ninitial_model = {model:?}\nround_interval = \"3s\"\nround_timeout = \"15s\"\n\
         min_clients = 3\n"
    )
}

/// `synapsectl rounds list`, newest first (empty while the console is away).
fn rounds(hub: &Hub) -> Vec<Value> {
    match hub.try_ctl(&["rounds", "list", "--limit", "1000"]) {
        Ok(Value::Array(rounds)) => rounds,
        _ => Vec::new(),
    }
}

/// A round crashed in the middle: its number, the gradients in at the crash, and the round
/// as it ended.
struct Crashed {
    round: u64,
    in_at_crash: u64,
    ended: Value,
}

/// Holds a round open: cuts the link of agent `AWAY` at the hub's end (the hub still counts it
/// connected: that agent's link has a long idle timeout) and waits for a round opened for every agent
/// with the other two's gradients in. Then crashes with `crash`, restores the link, and waits
/// until that round ended and a later one closed with every agent's gradient.
fn crash_mid_round(
    star: &Star,
    hub: &mut Hub,
    what: &str,
    crash: impl FnOnce(&mut Hub),
) -> Crashed {
    star.cut(AWAY, End::Hub);
    let open = wait_for("a round open with two gradients of three", LIMIT, || {
        rounds(hub).into_iter().find(|r| {
            r["state"] == "open"
                && r["invited"] == AGENTS.len()
                && r["accepted"] == AGENTS.len() - 1
        })
    });
    let round = open["round"].as_u64().unwrap();
    crash(hub);
    star.restore(AWAY, End::Hub);
    let ended = wait_for(&format!("round {round} ended after {what}"), LIMIT, || {
        rounds(hub)
            .into_iter()
            .find(|r| r["round"] == round && r["state"] != "open")
    });
    if ended["state"] == "closed" {
        assert_eq!(ended["accepted"], AGENTS.len(), "{ended}");
    }
    let later = wait_for(&format!("a round after {what} closed"), LIMIT, || {
        rounds(hub)
            .into_iter()
            .find(|r| r["round"].as_u64() > Some(round) && r["state"] == "closed")
    });
    assert_eq!(later["accepted"], AGENTS.len(), "{later}");
    Crashed {
        round,
        in_at_crash: open["accepted"].as_u64().unwrap_or(0),
        ended,
    }
}

/// Every round took at most the gradients it invited; every closed round produced one model
/// version, and every version after the first came from one closed round. Returns the
/// closed rounds.
fn check_rounds(hub: &Hub) -> usize {
    let rounds = rounds(hub);
    let models = match hub.ctl(&["models", "list"]) {
        Value::Array(models) => models,
        other => panic!("models list: {other}"),
    };
    for r in &rounds {
        assert!(r["accepted"].as_u64() <= r["invited"].as_u64(), "{r}");
    }
    let closed: Vec<&Value> = rounds.iter().filter(|r| r["state"] == "closed").collect();
    let mut produced: Vec<u64> = closed
        .iter()
        .map(|r| r["produced_version"].as_u64().unwrap_or(0))
        .collect();
    produced.sort_unstable();
    let versions: Vec<u64> = models
        .iter()
        .map(|m| m["version"].as_u64().unwrap())
        .collect();
    assert_eq!(
        produced,
        versions[1..],
        "each closed round produced one version, each version after the first came from one \
         round:\nrounds {rounds:#?}\nmodels {models:#?}"
    );
    for model in &models[1..] {
        let from = closed
            .iter()
            .find(|r| r["produced_version"] == model["version"])
            .unwrap();
        assert_eq!(model["round"], from["round"], "{model} from {from}");
    }
    closed.len()
}

/// `(agent, running version)` of every host of rollout `id`.
fn running(status: &Value) -> Vec<(String, String)> {
    let mut hosts: Vec<(String, String)> = status["hosts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| {
            let s = |k: &str| h[k].as_str().unwrap_or_default().to_owned();
            (s("agent_id"), s("running"))
        })
        .collect();
    hosts.sort();
    hosts
}

fn status(hub: &Hub, id: &str) -> Option<Value> {
    hub.try_ctl(&["rollouts", "status", id])
        .ok()
        .map(|s| s[0].clone())
}

fn wait_rollout(hub: &Hub, id: &str, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
    wait_for(what, LIMIT, || status(hub, id).filter(|s| cond(s)))
}

#[test]
fn rounds_and_a_rollout_finish_once_across_crashes() {
    let started = Instant::now();
    let root = tempfile::tempdir().unwrap();
    let root = synapse_tests::Workdir::new(root);
    let dir = root.path();
    let star = Star::new(AGENTS.len());
    let ids: Vec<&str> = AGENTS.iter().map(|(id, _)| *id).collect();
    let pki = Pki::new(dir.join("pki"), &ids);
    let model = dir.join("initial.onnx");
    std::fs::write(&model, synapse_agent::policy::live::BUILT_IN_MODEL).unwrap();
    let mut hub = Hub::start(
        star.hub.clone(),
        dir,
        &pki,
        &star.hub_ip(),
        &hub_config(&model),
    );
    let mut agents: Vec<Agent> = AGENTS
        .iter()
        .enumerate()
        .map(|(i, agent)| {
            let functions = [
                format!("{}-fn-0", agent.0),
                format!("{}-fn-1", agent.0),
                SHARED.to_owned(),
            ];
            // The agent whose link is cut to hold a round open stays connected meanwhile.
            let idle = if i == AWAY { "10s" } else { "2s" };
            Agent::start_with(
                star.agents[i].clone(),
                dir,
                &pki,
                *agent,
                &hub.link,
                &functions,
                idle,
            )
        })
        .collect();
    hub.wait_connected(&ids, LIMIT);
    let drives: Vec<Drive> = agents
        .iter()
        .map(|a| {
            let plan = DrivePlan {
                prefix: format!("{}-fn-", a.id),
                functions: 2,
                minutes: 70,
                speed: 60.0,
                max_per_minute: 30,
            };
            Drive::start(&a.ns, dir, a.gateway(), &plan)
        })
        .collect();

    // Rounds: once they close, the hub crashes while one is open, then an agent does.
    wait_for("a first round closed", LIMIT, || {
        rounds(&hub).into_iter().find(|r| r["state"] == "closed")
    });
    let by_hub = crash_mid_round(&star, &mut hub, "the hub's crash", |hub| {
        hub.kill();
        hub.spawn();
    });
    // The agent killed has answered the round; restarted, it may answer it again.
    let by_agent = crash_mid_round(&star, &mut hub, "an agent's crash", |_| {
        agents[1].kill();
        agents[1].spawn();
    });

    // A rollout of the shared function: the hub crashes at the canary step, an agent at the
    // second step; the rollout goes on from where it was.
    let spec = dir.join("fn-r-2.toml");
    std::fs::write(
        &spec,
        format!(
            "name = \"{SHARED}\"\nversion = \"2\"\ncommand = {:?}\nargs = [\"--work-ms\", \"1\"]\nmin_warm = 1\n",
            bin("synapse-sample-fn")
        ),
    )
    .unwrap();
    let spec = spec.to_str().unwrap();
    let begun = hub.ctl(&[
        "rollouts",
        "start",
        SHARED,
        "--version",
        "2",
        "--payload",
        spec,
        "--steps",
        "1/tier,100%",
        "--bake",
        "4s",
        "--reason",
        "netns",
    ]);
    let id = begun[0]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("rollout refused: {begun}"))
        .to_owned();
    wait_rollout(&hub, &id, "the canaries on version 2", |s| {
        s["step"] == 0 && running(s).iter().filter(|(_, v)| v == "2").count() == 2
    });
    hub.kill();
    hub.spawn();
    wait_rollout(
        &hub,
        &id,
        "the second step with every host on version 2",
        |s| s["step"] == 1 && running(s).iter().all(|(_, v)| v == "2"),
    );
    agents[1].kill();
    agents[1].spawn();
    let done = wait_rollout(&hub, &id, "the rollout to end", |s| {
        ["succeeded", "rolled back", "aborted"].contains(&s["state"].as_str().unwrap_or(""))
    });
    let events: Vec<(String, u64)> = done["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["event"].as_str().unwrap().to_owned(),
                e["step"].as_u64().unwrap_or(99),
            )
        })
        .collect();
    let expected = [
        ("started", 0),
        ("step_passed", 0),
        ("step_passed", 1),
        ("succeeded", 1),
    ]
    .map(|(e, s)| (e.to_owned(), s));
    assert_eq!(events, expected, "each step passed once: {done:#}");
    let done = wait_rollout(&hub, &id, "every host on version 2", |s| {
        running(s).len() == 3 && running(s).iter().all(|(_, v)| v == "2")
    });
    assert_eq!(done["state"], "succeeded");

    let closed = check_rounds(&hub);
    for d in drives {
        d.finish(Duration::from_secs(200));
    }
    let all: Vec<&Agent> = agents.iter().collect();
    let books = ledger::settle(&hub, &all, LIMIT);
    ledger::print(&books);
    let closed = closed.max(check_rounds(&hub));
    for (who, c) in [("the hub", &by_hub), ("an agent", &by_agent)] {
        eprintln!(
            "crash_rounds: {who} killed in round {} with {} of {} gradients in: the round {} with \
             {} accepted, refused {}",
            c.round,
            c.in_at_crash,
            AGENTS.len(),
            c.ended["state"].as_str().unwrap_or("?"),
            c.ended["accepted"],
            c.ended["refused"]
        );
    }
    eprintln!(
        "crash_rounds: {closed} rounds closed, each version from one round; rollout {id} \
         succeeded with each step passed once across a hub and an agent kill; {} batches and \
         {} invocations counted once; {} hub kills, {} agent kills; {:.0} s",
        books.iter().map(|b| b.batches).sum::<u64>(),
        books.iter().map(|b| b.invocations).sum::<u64>(),
        hub.kills,
        agents.iter().map(|a| a.kills).sum::<u32>(),
        started.elapsed().as_secs_f64()
    );
    for agent in &mut agents {
        assert!(agent.stop(), "{} stops cleanly:\n{}", agent.id, agent.log());
    }
}
