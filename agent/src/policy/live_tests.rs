//! Tests of the live adapter: units across the clock boundary, observations from telemetry,
//! and decisions equal to the replay's for the same counts.

use super::*;
use crate::{config::AgentConfig, telemetry::histogram::LatencyHistogram};

fn interval(
    start_unix_ms: i64,
    warm: u64,
    cold: u64,
    exec_s: f64,
    queue_s: f64,
) -> FunctionInterval {
    let mut invocation = LatencyHistogram::default();
    let mut queue = LatencyHistogram::default();
    for _ in 0..warm + cold {
        invocation.observe(exec_s + queue_s);
        queue.observe(queue_s);
    }
    FunctionInterval {
        function: "f".into(),
        start_unix_ms,
        warm_invocations: warm,
        cold_invocations: cold,
        invocation,
        queue,
        ..FunctionInterval::default()
    }
}

/// The policy named `name` over a model that forecasts nothing (quick to build; the neural
/// model's own tests are in `forecast::neural`).
fn policies(name: &str, interval_s: u64) -> LivePolicies {
    LivePolicies::with_model(
        &section(name),
        Duration::from_secs(interval_s),
        ModelSource::from(Arc::new(MlpModel::zeroed())),
    )
    .expect("a known policy")
}

fn section(name: &str) -> PolicySection {
    PolicySection {
        name: name.into(),
        ..PolicySection::default()
    }
}

fn spec() -> FunctionSpec {
    AgentConfig::parse(
        "[[functions]]\nname = \"f\"\ncommand = \"/bin/true\"\nkeep_alive = \"42s\"\nmin_warm = 2\n",
        "t.toml",
    )
    .expect("valid")
    .functions
    .remove(0)
}

#[test]
fn with_the_default_interval_the_policy_clock_is_the_wall_clock() {
    let clock = PolicyClock::new(Duration::from_secs(60));
    assert_eq!(clock.to_wall(600.0), Duration::from_secs(600));
    let o = clock.observation(&interval(0, 3, 1, 0.25, 0.0), 256.0);
    assert_eq!(o.minute.invocations, 4.0);
    assert!((o.mean_duration_s - 0.25).abs() < 1e-9);
    assert_eq!(o.memory_mb, 256.0);
}

#[test]
fn a_one_second_interval_runs_the_policy_sixty_times_faster() {
    let clock = PolicyClock::new(Duration::from_secs(1));
    // A 0.3-s execution is 18 s of the policy's; its 10-minute keep-alive is 10 s here.
    let o = clock.observation(&interval(5_000, 1, 0, 0.3, 0.0), 128.0);
    assert!((o.mean_duration_s - 18.0).abs() < 1e-6, "{o:?}");
    assert_eq!(o.minute.minute_of_day, 5, "the fifth interval of the day");
    assert_eq!(clock.to_wall(600.0), Duration::from_secs(10));
}

#[test]
fn execution_time_leaves_out_queueing_and_failed_calls_count_as_demand() {
    let clock = PolicyClock::new(Duration::from_secs(60));
    let mut iv = interval(0, 2, 0, 0.1, 0.4);
    iv.failed_invocations = 1;
    let o = clock.observation(&iv, 128.0);
    assert_eq!(o.minute.invocations, 3.0);
    assert!((o.mean_duration_s - 0.1).abs() < 1e-9, "{o:?}");
    let quiet = clock.observation(&interval(0, 0, 0, 0.0, 0.0), 128.0);
    assert_eq!(quiet.minute.invocations, 0.0);
}

#[test]
fn durations_that_no_clock_can_hold_are_bounded() {
    let clock = PolicyClock::new(Duration::from_secs(1));
    assert_eq!(clock.to_wall(f64::NAN), Duration::ZERO);
    assert_eq!(clock.to_wall(-5.0), Duration::ZERO);
    assert_eq!(clock.to_wall(f64::INFINITY), Duration::MAX);
}

/// Counts of a timer: a burst of `burst` calls every `period` intervals.
fn periodic(minutes: usize, period: usize, burst: u64) -> impl Iterator<Item = (usize, u64)> {
    (0..minutes).map(move |m| (m, if m % period == 0 { burst } else { 0 }))
}

#[test]
fn the_planner_decides_as_the_replay_does_for_the_same_counts() {
    let live = policies("forecast", 60);
    let mut planner = live.planner(&spec());
    let mut replayed = PolicySpec::parse("forecast")
        .unwrap()
        .build(&PolicyConfig::default(), &live.model);
    let clock = PolicyClock::new(Duration::from_secs(60));
    for (m, n) in periodic(120, 7, 3) {
        let iv = interval(m as i64 * 60_000, n, 0, 0.5, 0.0);
        planner.observe(&iv, 128.0);
        replayed.observe(&clock.observation(&iv, 128.0));
        let d = replayed.decide((m + 1) as f64 * 60.0);
        let plan = planner.plan(0.0);
        assert_eq!(plan.target, d.pool_target, "minute {m}");
        assert_eq!(plan.keep_alive, clock.to_wall(d.keep_alive_s), "minute {m}");
        let prewarm = d.prewarm_s.filter(|&p| d.keep_alive_s > p + 1.0);
        assert_eq!(
            plan.prewarm,
            prewarm.map(|p| clock.to_wall(p)),
            "minute {m}"
        );
    }
}

#[test]
fn a_learned_timer_is_prewarmed_before_its_beat_in_wall_time() {
    let live = policies("forecast", 1);
    let mut planner = live.planner(&spec());
    for (m, n) in periodic(60, 6, 4) {
        planner.observe(&interval(m as i64 * 1000, n, 0, 0.3, 0.0), 128.0);
    }
    // The last burst was at interval 54; 59 has just closed, so the next beat is due now.
    let plan = planner.plan(0.0);
    assert!(plan.target >= 1, "{plan:?}");
    let view = planner.forecast().expect("our policy forecasts");
    assert!(view.invocations > 0.5, "{view:?}");
    assert_eq!(
        view.accuracy.samples, 60,
        "one forecast scored per interval"
    );
}

#[test]
fn after_a_burst_the_pool_empties_well_before_the_next_beat() {
    let live = policies("forecast", 1);
    let mut planner = live.planner(&spec());
    for (m, n) in periodic(55, 6, 4) {
        planner.observe(&interval(m as i64 * 1000, n, 0, 0.3, 0.0), 128.0);
    }
    // Interval 54 held a burst: nothing is expected in the next one, and an idle instance is
    // not worth keeping for the six intervals (seconds) to the next beat.
    let plan = planner.plan(0.0);
    assert_eq!(plan.target, 0, "{plan:?}");
    assert!(plan.keep_alive < Duration::from_secs(3), "{plan:?}");
}

#[test]
fn a_baselines_prewarm_is_converted_to_wall_time() {
    let live = policies("hybrid-histogram", 1);
    let mut planner = live.planner(&spec());
    for (m, n) in periodic(200, 10, 1) {
        planner.observe(&interval(m as i64 * 1000, n, 0, 0.1, 0.0), 128.0);
    }
    // Idle times of 10 minutes: warm from 9 min − 10% to 11 min + 10%, one second a minute.
    let plan = planner.plan(0.0);
    let prewarm = plan.prewarm.expect("pre-warms").as_secs_f64();
    assert!((prewarm - 9.0 * 0.9).abs() < 1e-6, "{plan:?}");
    assert!(
        (plan.keep_alive.as_secs_f64() - 11.0 * 1.1).abs() < 1e-6,
        "{plan:?}"
    );
}

#[test]
fn fixed_keepalive_without_a_ttl_is_each_functions_own() {
    let live = policies("fixed-keepalive", 1);
    let mut planner = live.planner(&spec());
    let plan = planner.plan(0.0);
    assert_eq!(plan.keep_alive, Duration::from_secs(42));
    assert_eq!(plan.target, 2);
    assert!(planner.forecast().is_none());
}

#[test]
fn baselines_run_on_the_policy_clock() {
    let live = policies("fixed-keepalive(10m)", 1);
    assert_eq!(
        live.planner(&spec()).plan(0.0).keep_alive,
        Duration::from_secs(10)
    );
    let live = policies("hybrid-histogram", 60);
    let plan = live.planner(&spec()).plan(0.0);
    assert_eq!(
        plan.keep_alive,
        Duration::from_secs(14_400),
        "the published fallback"
    );
}

#[test]
fn a_model_file_that_is_not_onnx_is_refused_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.onnx");
    std::fs::write(&path, b"not a model").unwrap();
    let mut s = section("forecast(forecaster=mlp)");
    s.model = Some(path.clone());
    let err = LivePolicies::load(&s, Duration::from_secs(60))
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains("policy.model") && err.contains("m.onnx"),
        "{err}"
    );
    s.model = Some(dir.path().join("missing.onnx"));
    let err = LivePolicies::load(&s, Duration::from_secs(60))
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("missing.onnx"), "{err}");
}

#[test]
fn the_built_in_model_is_the_pretrained_default() {
    let (_, bytes) = neural::default_model().expect("pretrains");
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/policy/default_forecaster.onnx"
    );
    if std::env::var_os("SYNAPSE_WRITE_BUILT_IN_MODEL").is_some() {
        std::fs::write(path, &bytes).expect("writing the built-in model");
    }
    assert!(
        bytes == BUILT_IN_MODEL,
        "{path} is not the pretrained default model any more; write it again with \
         SYNAPSE_WRITE_BUILT_IN_MODEL=1 cargo test -p synapse-agent --lib built_in_model"
    );
    let live = LivePolicies::load(&section("forecast"), Duration::from_secs(60)).expect("loads");
    assert_eq!(
        *live.model.current(),
        neural::onnx::decode(&bytes).expect("decodes")
    );
}

#[test]
fn a_model_version_swapped_in_is_the_one_the_next_forecast_runs() {
    use crate::forecast::neural::{ModelHandle, ServingModel};
    let handle = ModelHandle::factory().expect("the built-in model loads");
    let live = LivePolicies::with_model(
        &section("forecast(forecaster=mlp)"),
        Duration::from_secs(60),
        ModelSource::Served(handle.clone()),
    )
    .expect("a known policy");
    let mut planner = live.planner(&spec());
    for m in 0..30 {
        planner.observe(&interval(m * 60_000, 3, 0, 0.1, 0.0), 128.0);
    }
    let before = planner.forecast().expect("an mlp forecast");
    assert_eq!(before.model_version, Some(0), "the agent's own model");
    let before = before.invocations;

    // A version whose output bias is far higher forecasts far more for the same history.
    let mut shifted = (*handle.current().mlp).clone();
    let mut delta = vec![0.0; shifted.params().len()];
    *delta.last_mut().expect("weights") = 3.0;
    shifted.apply(&delta, 1.0);
    let version = ServingModel::load(7, &neural::onnx::encode(&shifted)).expect("loads");
    handle.install(version);
    planner.observe(&interval(30 * 60_000, 3, 0, 0.1, 0.0), 128.0);
    let after = planner.forecast().expect("an mlp forecast");
    assert_eq!(
        after.model_version,
        Some(7),
        "the forecast names the new version"
    );
    let after = after.invocations;

    let fixed_model = LivePolicies::with_model(
        &section("forecast(forecaster=mlp)"),
        Duration::from_secs(60),
        ModelSource::from(Arc::new(shifted)),
    )
    .expect("a known policy");
    let mut reference = fixed_model.planner(&spec());
    for m in 0..31 {
        reference.observe(&interval(m * 60_000, 3, 0, 0.1, 0.0), 128.0);
    }
    let expected = reference.forecast().expect("an mlp forecast").invocations;
    assert!(
        (after - expected).abs() < 1e-9,
        "after the swap {after}, the new version alone {expected}"
    );
    assert!(after > before, "before {before}, after {after}");
}
