//! The engine end to end on a real sled store and registry: agents registered as the link
//! would, telemetry counted as the link would, and the clock passed in, so every test is
//! deterministic.

use std::time::Duration;

use synapse_proto::link::v1::{FunctionInterval, Hello, RunningVersion, TelemetryBatch};

use super::*;
use crate::{config::RolloutsConfig, link::AgentOutlet, registry::Registry};

const BAKE_MS: i64 = 1_000;

struct Fleet {
    _dir: tempfile::TempDir,
    db: sled::Db,
    registry: Registry,
    engine: RolloutEngine,
    sequence: u64,
}

fn config() -> RolloutsConfig {
    let mut config = RolloutsConfig::default();
    config.gates.min_invocations = 10;
    config
}

/// `agent` (tier number `tier`) connects to `registry` as connection `connection`.
fn join(registry: &Registry, agent: &str, tier: i32, connection: u64) {
    let hello = Hello {
        agent_id: agent.into(),
        tier,
        ..Default::default()
    };
    registry
        .connect(&hello, 1, connection, Duration::ZERO)
        .unwrap();
}

impl Fleet {
    /// Two edge hosts, one regional, one cloud.
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = synapse_db::open(dir.path()).unwrap();
        let registry = Registry::open(&db, Duration::from_secs(5)).unwrap();
        for (i, (agent, tier)) in [
            ("edge-1", 1),
            ("edge-2", 1),
            ("regional-1", 2),
            ("cloud-1", 3),
        ]
        .into_iter()
        .enumerate()
        {
            join(&registry, agent, tier, i as u64);
        }
        let engine =
            RolloutEngine::new(&db, registry.clone(), AgentOutlet::default(), config()).unwrap();
        Self {
            _dir: dir,
            db,
            registry,
            engine,
            sequence: 0,
        }
    }

    fn reopen_engine(&mut self) {
        self.engine = RolloutEngine::new(
            &self.db,
            self.registry.clone(),
            AgentOutlet::default(),
            config(),
        )
        .unwrap();
    }

    /// `agent` served `invocations` of fn-a, `failed` of them with an error, all at 5 ms.
    fn served(&mut self, agent: &str, invocations: u64, failed: u64) {
        self.sequence += 1;
        let batch = TelemetryBatch {
            sequence: self.sequence,
            intervals: vec![FunctionInterval {
                function: "fn-a".into(),
                gateway_invocations: invocations,
                failed_invocations: failed,
                invocation_bounds_s: vec![0.01, 0.1, 1.0],
                invocation_counts: vec![invocations, 0, 0],
                ..Default::default()
            }],
        };
        self.registry.apply(agent, 1, &batch).unwrap();
    }

    fn everyone_served(&mut self, failing: &[&str]) {
        for agent in ["edge-1", "edge-2", "regional-1", "cloud-1"] {
            let failed = if failing.contains(&agent) { 50 } else { 0 };
            self.served(agent, 50, failed);
        }
    }

    fn start(&self, version: &str) -> Rollout {
        self.engine.start(self.spec(version)).unwrap()
    }

    /// A rollout of fn-a at `version` to every host: a canary per tier, half, all.
    fn spec(&self, version: &str) -> StartRequest {
        StartRequest {
            target: Target::Function("fn-a".into()),
            new: Desired {
                version: version.into(),
                payload: format!(
                    "name = \"fn-a\"\nversion = \"{version}\"\ncommand = \"/bin/fn\"\n"
                ),
                sha256: String::new(),
            },
            selector: Default::default(),
            steps: Some(vec!["1/tier".into(), "50%".into(), "100%".into()]),
            bake: Some(Duration::from_millis(BAKE_MS as u64)),
            who: "alice".into(),
            reason: "new build".into(),
        }
    }

    fn rollout(&self, id: &str) -> Rollout {
        self.engine
            .history(None, 100)
            .unwrap()
            .into_iter()
            .find(|r| r.id == id)
            .unwrap()
    }

    /// Every selected host reports the version the engine wants it to run.
    fn agents_apply(&self) {
        for agent in ["edge-1", "edge-2", "regional-1", "cloud-1"] {
            let desired = self.engine.desired(agent).unwrap();
            let running = desired
                .iter()
                .map(|(target, d)| RunningVersion {
                    target: target.to_string(),
                    version: d.version.clone(),
                    ..Default::default()
                })
                .collect();
            self.engine.running_reported(agent, running);
        }
    }
}

#[test]
fn a_good_version_goes_through_every_step() {
    let mut fleet = Fleet::new();
    let id = fleet.start("2").id;
    assert_eq!(fleet.rollout(&id).state, State::Pending);
    let t0 = registry_now();
    fleet.engine.tick(t0).unwrap();
    let r = fleet.rollout(&id);
    assert_eq!((r.state, r.step), (State::Progressing, 0));
    let canaries: Vec<&str> = r.updated_hosts().iter().map(|(h, _)| h.as_str()).collect();
    assert_eq!(
        canaries,
        ["edge-1", "regional-1", "cloud-1"],
        "one host per tier"
    );
    assert_eq!(
        fleet.engine.desired("edge-2").unwrap()[&r.target].version,
        "",
        "not yet"
    );

    let mut now = t0;
    for step in 0..3 {
        fleet.agents_apply();
        fleet.everyone_served(&[]);
        fleet.engine.tick(now + BAKE_MS - 1).unwrap();
        assert_eq!(fleet.rollout(&id).step, step, "the bake is not over yet");
        now += BAKE_MS;
        fleet.engine.tick(now).unwrap();
    }
    let r = fleet.rollout(&id);
    assert_eq!(r.state, State::Succeeded, "{:#?}", r.history);
    let passed: Vec<u32> = r
        .history
        .iter()
        .filter(|e| e.event == "step_passed")
        .map(|e| e.step)
        .collect();
    assert_eq!(passed, [0, 1, 2]);
    assert!(
        r.history[1]
            .gates
            .iter()
            .any(|g| g.gate == "error_rate" && g.passed)
    );
    assert_eq!(r.history[0].who, "alice");
    for agent in ["edge-1", "edge-2", "regional-1", "cloud-1"] {
        assert_eq!(
            fleet.engine.desired(agent).unwrap()[&r.target].version,
            "2",
            "{agent}"
        );
    }
    assert!(fleet.engine.active().unwrap().is_empty());

    // A host that joins afterwards runs what the rollout gave every host.
    join(&fleet.registry, "edge-3", 1, 10);
    assert_eq!(
        fleet.engine.desired("edge-3").unwrap()[&r.target].version,
        "2"
    );
}

#[test]
fn a_host_that_joined_after_a_rollout_keeps_its_version_until_its_wave_of_the_next() {
    let mut fleet = Fleet::new();
    let first = fleet.start("2").id;
    let mut now = registry_now();
    fleet.engine.tick(now).unwrap();
    for _ in 0..3 {
        fleet.agents_apply();
        fleet.everyone_served(&[]);
        now += BAKE_MS;
        fleet.engine.tick(now).unwrap();
    }
    assert_eq!(fleet.rollout(&first).state, State::Succeeded);
    join(&fleet.registry, "edge-3", 1, 10);
    let target = fleet.rollout(&first).target;
    assert_eq!(
        fleet.engine.desired("edge-3").unwrap()[&target].version,
        "2"
    );

    // The next rollout's canary step leaves edge-3 out: it stays on 2, not on its
    // configured version; an abort leaves it there too.
    let next = fleet.start("3").id;
    fleet.engine.tick(now).unwrap();
    let r = fleet.rollout(&next);
    assert!(r.updated_hosts().iter().all(|(h, _)| h != "edge-3"));
    assert_eq!(
        fleet.engine.desired("edge-3").unwrap()[&target].version,
        "2"
    );
    fleet
        .engine
        .operate(&next, Operation::Abort, "alice", "wrong build")
        .unwrap();
    assert_eq!(
        fleet.engine.desired("edge-3").unwrap()[&target].version,
        "2"
    );
}

#[test]
fn a_late_host_outside_a_succeeded_rollouts_selector_gets_nothing_from_it() {
    let mut fleet = Fleet::new();
    let mut spec = fleet.spec("2");
    spec.selector.tiers = vec![2];
    let id = fleet.engine.start(spec).unwrap().id;
    let mut now = registry_now();
    fleet.engine.tick(now).unwrap();
    for _ in 0..4 {
        fleet.agents_apply();
        fleet.everyone_served(&[]);
        now += BAKE_MS;
        fleet.engine.tick(now).unwrap();
    }
    let r = fleet.rollout(&id);
    assert_eq!(r.state, State::Succeeded, "{:#?}", r.history);
    for (agent, tier) in [("regional-2", 2), ("edge-3", 1)] {
        join(&fleet.registry, agent, tier, 20);
    }
    assert_eq!(
        fleet.engine.desired("regional-2").unwrap()[&r.target].version,
        "2"
    );
    assert!(
        !fleet
            .engine
            .desired("edge-3")
            .unwrap()
            .contains_key(&r.target)
    );
}

#[test]
fn a_version_that_fails_invocations_is_rolled_back_at_the_canary_step() {
    let mut fleet = Fleet::new();
    let id = fleet.start("2").id;
    let t0 = registry_now();
    fleet.engine.tick(t0).unwrap();
    fleet.agents_apply();
    fleet.everyone_served(&["edge-1", "regional-1", "cloud-1"]);
    fleet.engine.tick(t0 + BAKE_MS).unwrap();
    let r = fleet.rollout(&id);
    assert_eq!((r.state, r.step), (State::RolledBack, 0));
    let failed = r.history.iter().find(|e| e.event == "step_failed").unwrap();
    let gate = failed.gates.iter().find(|g| !g.passed).unwrap();
    assert_eq!(gate.gate, "error_rate");
    assert_eq!((gate.updated, gate.baseline), (1.0, 0.0));
    assert!(
        failed
            .detail
            .contains("error_rate: updated 1.0000 vs baseline 0.0000"),
        "{}",
        failed.detail
    );
    for agent in ["edge-1", "regional-1", "cloud-1"] {
        assert_eq!(
            fleet.engine.desired(agent).unwrap()[&r.target].version,
            "",
            "{agent} back to its own config"
        );
    }
}

#[test]
fn a_host_that_cannot_apply_counts_against_the_gate() {
    let mut fleet = Fleet::new();
    let id = fleet.start("2").id;
    let t0 = registry_now();
    fleet.engine.tick(t0).unwrap();
    fleet.agents_apply();
    fleet.engine.running_reported(
        "cloud-1",
        vec![RunningVersion {
            target: "fn-a".into(),
            version: String::new(),
            refused_version: "2".into(),
            error: "unknown field `comand`".into(),
        }],
    );
    fleet.everyone_served(&[]);
    fleet.engine.tick(t0 + BAKE_MS).unwrap();
    let r = fleet.rollout(&id);
    assert_eq!(r.state, State::RolledBack);
    let failed = r.history.iter().find(|e| e.event == "step_failed").unwrap();
    let gate = failed.gates.iter().find(|g| !g.passed).unwrap();
    assert_eq!(gate.gate, "agent_health");
    assert!(
        gate.detail.contains("cloud-1: unknown field"),
        "{}",
        gate.detail
    );
}

#[test]
fn only_one_active_rollout_per_target() {
    let fleet = Fleet::new();
    fleet.start("2");
    let err = fleet
        .engine
        .start(StartRequest {
            target: Target::Function("fn-a".into()),
            new: Desired {
                version: "3".into(),
                payload: "name = \"fn-a\"\nversion = \"3\"\n".into(),
                sha256: String::new(),
            },
            selector: Default::default(),
            steps: None,
            bake: None,
            who: "bob".into(),
            reason: String::new(),
        })
        .unwrap_err();
    assert!(
        err.to_string().contains("already has an active rollout"),
        "{err}"
    );
}

#[test]
fn pause_holds_the_step_resume_bakes_it_again_abort_restores_and_promote_finishes() {
    let mut fleet = Fleet::new();
    let id = fleet.start("2").id;
    let t0 = registry_now();
    fleet.engine.tick(t0).unwrap();
    fleet
        .engine
        .operate("fn-a", Operation::Pause, "bob", "checking")
        .unwrap();
    fleet.agents_apply();
    fleet.everyone_served(&[]);
    fleet.engine.tick(t0 + 10 * BAKE_MS).unwrap();
    let r = fleet.rollout(&id);
    assert_eq!(
        (r.state, r.step),
        (State::Paused, 0),
        "a paused rollout does not move"
    );
    let resumed = fleet
        .engine
        .operate(&id, Operation::Resume, "bob", "fine")
        .unwrap();
    fleet
        .engine
        .tick(resumed.step_started_unix_ms + BAKE_MS - 1)
        .unwrap();
    assert_eq!(fleet.rollout(&id).step, 0, "resume starts the bake again");
    let r = fleet
        .engine
        .operate(&id, Operation::Promote, "bob", "hotfix")
        .unwrap();
    assert_eq!(r.state, State::Succeeded);
    assert_eq!(
        fleet.engine.desired("edge-2").unwrap()[&r.target].version,
        "2"
    );

    let id = fleet.start("3").id;
    fleet.engine.tick(registry_now()).unwrap();
    assert_eq!(
        fleet.engine.desired("edge-1").unwrap()[&Target::Function("fn-a".into())].version,
        "3"
    );
    let r = fleet
        .engine
        .operate(&id, Operation::Abort, "carol", "wrong build")
        .unwrap();
    assert_eq!(r.state, State::Aborted);
    assert_eq!(
        fleet.engine.desired("edge-1").unwrap()[&r.target].version,
        "2",
        "back to the version the last rollout settled"
    );
    let events: Vec<(&str, &str)> = r
        .history
        .iter()
        .map(|e| (e.event.as_str(), e.who.as_str()))
        .collect();
    assert_eq!(events, [("started", "alice"), ("aborted", "carol")]);
    assert!(
        fleet
            .engine
            .operate(&id, Operation::Resume, "carol", "")
            .is_err()
    );
}

#[test]
fn a_restarted_engine_resumes_at_the_same_step() {
    let mut fleet = Fleet::new();
    let id = fleet.start("2").id;
    let t0 = registry_now();
    fleet.engine.tick(t0).unwrap();
    fleet.agents_apply();
    fleet.everyone_served(&[]);
    fleet.engine.tick(t0 + BAKE_MS).unwrap();
    assert_eq!(fleet.rollout(&id).step, 1);
    fleet.reopen_engine();
    let r = fleet.engine.get("fn-a").unwrap();
    assert_eq!((r.state, r.step), (State::Progressing, 1));
    assert_eq!(
        r.step_started_unix_ms,
        t0 + BAKE_MS,
        "the step's bake clock survives"
    );
    fleet.agents_apply();
    fleet.everyone_served(&[]);
    fleet.engine.tick(t0 + 2 * BAKE_MS).unwrap();
    assert_eq!(fleet.rollout(&id).step, 2);
}

impl Fleet {
    /// `agent` served 50 invocations of fn-a in an interval for which its planner forecast
    /// `forecast`, with model `version` in the forecast.
    fn forecast(&mut self, agent: &str, forecast: f64, version: Option<u64>) {
        self.sequence += 1;
        let batch = TelemetryBatch {
            sequence: self.sequence,
            intervals: vec![FunctionInterval {
                function: "fn-a".into(),
                gateway_invocations: 50,
                invocation_bounds_s: vec![0.01, 0.1, 1.0],
                invocation_counts: vec![50, 0, 0],
                forecast_invocations: Some(forecast),
                forecast_model_version: version,
                ..Default::default()
            }],
        };
        self.registry.apply(agent, 1, &batch).unwrap();
    }

    /// Starts model `version`'s rollout, begins it, and lets the canaries install it.
    fn model_canaries(&mut self, version: &str) -> (Rollout, Vec<String>, i64) {
        let r = self
            .engine
            .start_model(version, &"ab".repeat(32), "federated round")
            .unwrap();
        assert_eq!(
            r.steps.len(),
            2,
            "the model policy: a canary per tier, then all"
        );
        let t0 = registry_now();
        self.engine.tick(t0).unwrap();
        let mut on_new = self.engine.agents_for_model(version).unwrap();
        on_new.sort();
        assert_eq!(on_new, ["cloud-1", "edge-1", "regional-1"]);
        for agent in &on_new {
            self.engine.model_reported(agent, version, None);
        }
        (r, on_new, t0)
    }
}

#[test]
fn a_worse_model_is_rolled_back_by_the_forecast_gate() {
    let mut fleet = Fleet::new();
    fleet.forecast("edge-1", 40.0, Some(0));
    let (r, canaries, t0) = fleet.model_canaries("7");
    for agent in &canaries {
        // Forecasts made before the new version was in service do not count for it.
        fleet.forecast(agent, 50.0, Some(0));
        fleet.forecast(agent, 80.0, Some(7));
        fleet.forecast(agent, 20.0, Some(7));
    }
    fleet.forecast("edge-2", 70.0, Some(0));
    fleet.forecast("edge-2", 40.0, Some(0));
    // Forecasts without a model say nothing about one.
    fleet.forecast("edge-2", 50.0, None);
    // A forecast that is not a number is refused and counted, the interval kept.
    fleet.forecast("edge-2", f64::NAN, Some(0));
    let share = fleet
        .registry
        .shares(Some("fn-a"))
        .unwrap()
        .into_iter()
        .find(|(_, agent, _)| agent == "edge-2")
        .unwrap()
        .2;
    assert_eq!(share.forecasts_refused, 1);
    assert_eq!(share.gateway_invocations, 200);
    // The model policy bakes 10 minutes by default.
    fleet.engine.tick(t0 + 600_000).unwrap();
    let r = fleet.rollout(&r.id);
    assert_eq!(r.state, State::RolledBack, "{:#?}", r.history);
    let failed = r.history.iter().find(|e| e.event == "step_failed").unwrap();
    let gate = failed.gates.iter().find(|g| !g.passed).unwrap();
    assert_eq!(
        (gate.gate.as_str(), gate.updated, gate.baseline),
        ("forecast_error", 30.0, 15.0),
        "{:#?}",
        failed.gates
    );
    assert!(fleet.engine.agents_for_model("7").unwrap().is_empty());
    assert_eq!(
        fleet.engine.model_wanted("edge-1"),
        None,
        "back to the agent's own model"
    );
}

#[test]
fn a_model_as_good_as_the_one_it_replaces_passes_and_a_failed_successor_goes_back_to_it() {
    let mut fleet = Fleet::new();
    let (r, canaries, t0) = fleet.model_canaries("1");
    for agent in &canaries {
        fleet.forecast(agent, 45.0, Some(1));
    }
    fleet.forecast("edge-2", 56.0, Some(0));
    fleet.engine.tick(t0 + 600_000).unwrap();
    let passed = fleet.rollout(&r.id);
    let gate = passed.history[1]
        .gates
        .iter()
        .find(|g| g.gate == "forecast_error")
        .unwrap();
    assert!(
        gate.passed && gate.updated == 5.0 && gate.baseline == 6.0,
        "{gate:?}"
    );
    fleet.engine.model_reported("edge-2", "1", None);
    fleet.engine.tick(t0 + 1_200_000).unwrap();
    assert_eq!(fleet.rollout(&r.id).state, State::Succeeded);
    assert_eq!(fleet.engine.model_wanted("edge-2"), Some(1));

    let (r, canaries, t0) = fleet.model_canaries("2");
    assert_eq!(fleet.engine.model_wanted("edge-1"), Some(2));
    for agent in &canaries {
        fleet.forecast(agent, 500.0, Some(2));
    }
    fleet.forecast("edge-2", 45.0, Some(1));
    fleet.engine.tick(t0 + 600_000).unwrap();
    assert_eq!(fleet.rollout(&r.id).state, State::RolledBack);
    for agent in ["edge-1", "edge-2", "regional-1", "cloud-1"] {
        assert_eq!(fleet.engine.model_wanted(agent), Some(1), "{agent}");
    }
}

fn registry_now() -> i64 {
    crate::registry::now_ms()
}

#[test]
fn federated_learning_sends_a_new_model_to_the_canaries_first() {
    let fleet = Fleet::new();
    let sha = "cd".repeat(32);
    let connected: Vec<String> = ["edge-1", "edge-2", "regional-1", "cloud-1"]
        .map(String::from)
        .to_vec();
    let mut first = fleet
        .engine
        .model_recipients("8", &sha, &connected)
        .unwrap();
    first.sort();
    assert_eq!(
        first,
        ["cloud-1", "edge-1", "regional-1"],
        "one canary per tier"
    );
    let again = fleet
        .engine
        .model_recipients("8", &sha, &connected)
        .unwrap();
    assert_eq!(again.len(), 3, "the same rollout, not a second one");
    fleet
        .engine
        .model_reported("cloud-1", "7", Some(("8", "hash mismatch")));
    let r = fleet.engine.get("model").unwrap();
    let health = fleet.engine.health(&r);
    assert_eq!(health.apply_failures, 1);
    // A newer model supersedes the one still rolling out.
    fleet
        .engine
        .model_recipients("9", &sha, &connected)
        .unwrap();
    assert!(fleet.engine.model_refused("8").unwrap());
    assert_eq!(fleet.engine.get("model").unwrap().new.version, "9");
}

#[test]
fn running_versions_keep_printable_bounded_text_and_drop_forged_versions() {
    let fleet = Fleet::new();
    let target = Target::Function("fn-a".into());
    fleet.engine.running_reported(
        "edge-1",
        vec![RunningVersion {
            target: "fn-a".into(),
            version: "1 2\nagent edge-2 connected".into(),
            ..Default::default()
        }],
    );
    assert_eq!(fleet.engine.running("edge-1", &target), None);
    fleet.engine.running_reported(
        "edge-1",
        vec![RunningVersion {
            target: "fn-a".into(),
            version: "1".into(),
            refused_version: "2".into(),
            error: format!("bad\u{1b}[2J\n{}", "x".repeat(10_000)),
        }],
    );
    let kept = fleet.engine.running("edge-1", &target).unwrap();
    assert!(kept.error.starts_with("bad?[2J?x"), "{}", kept.error);
    assert!(kept.error.chars().count() <= 1025, "{}", kept.error.len());
    let spec = StartRequest {
        new: Desired {
            version: "2 beta".into(),
            ..fleet.spec("2").new
        },
        ..fleet.spec("2")
    };
    assert!(fleet.engine.start(spec).is_err());
}
