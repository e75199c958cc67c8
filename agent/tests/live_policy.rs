//! The live agent runs the replay's pool policy on its own telemetry: a real agent with 1-s
//! telemetry intervals (one policy minute each) serves a function called in bursts on a
//! beat. Its policy (ours, the default, with the built-in neural model) learns the beat from
//! the closed intervals, raises the pool target and pre-warms instances before each burst, so
//! the burst is served warm, and lets them retire in the quiet between bursts. Runs as root.

mod common;

use std::{
    thread,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use common::*;

/// Seconds (telemetry intervals) from one burst to the next.
const PERIOD_S: u64 = 5;
/// Invocations in a burst, sent at once.
const BURST: usize = 3;
/// Bursts the policy learns from before it is checked, then bursts checked.
const LEARNING: u64 = 4;
const CHECKED: u64 = 3;

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64
}

fn sleep_until_ms(t: u64) {
    let now = unix_ms();
    if t > now {
        thread::sleep(Duration::from_millis(t - now));
    }
}

fn gauge(agent: &Agent, name: &str) -> f64 {
    agent
        .metric(&format!("{name}{{function=\"f\"}}"))
        .unwrap_or(f64::NAN)
}

/// Sends a burst; returns how many invocations were served warm.
fn burst(agent: &Agent) -> usize {
    let port = agent.gateway;
    let calls: Vec<_> = (0..BURST)
        .map(|_| thread::spawn(move || http_post(port, "/v1/functions/f/invoke", b"tick")))
        .collect();
    calls
        .into_iter()
        .map(|c| c.join().expect("caller"))
        .inspect(|r| assert_eq!(r.status, 200, "{r:?}"))
        .filter(|r| r.header("x-synapse-start") == Some("warm"))
        .count()
}

#[test]
fn the_policy_learns_a_beat_prewarms_before_each_burst_and_retires_after() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let subtree = format!("synapse-test-live-policy-{}", std::process::id());
    let config = format!(
        "[[functions]]\nname = \"f\"\ncommand = \"{SAMPLE_FN}\"\nargs = [\"--work-ms\", \"300\"]\n\
         max_instances = 8\n\n[policy]\nname = \"forecast\"\n"
    );
    let agent = Agent::start(dir.path(), free_ports(1), &subtree, &config);
    let log = || agent.log();
    assert!(log().contains("warm pools follow the policy"), "{}", log());

    // Bursts 300 ms into an interval, so each burst falls in one interval and the policy
    // has that interval's start to act on its forecast of it.
    let first = (unix_ms() / 1000 + 2) * 1000;
    let mut warm_before = Vec::new();
    let mut quiet_min = Vec::new();
    for k in 0..LEARNING + CHECKED {
        let start = first + k * PERIOD_S * 1000;
        let checked = k >= LEARNING;
        // Up to the burst: what the pool holds once the interval began.
        sleep_until_ms(start + 250);
        let (target, warm) = (
            gauge(&agent, "synapse_pool_target"),
            gauge(&agent, "synapse_warm_instances"),
        );
        sleep_until_ms(start + 300);
        let served_warm = burst(&agent);
        if checked {
            warm_before.push((target, warm, served_warm));
        }
        // In the quiet between bursts: the fewest warm instances seen.
        let mut fewest = f64::INFINITY;
        while unix_ms() < start + (PERIOD_S - 1) * 1000 {
            fewest = fewest.min(gauge(&agent, "synapse_warm_instances"));
            thread::sleep(Duration::from_millis(100));
        }
        if checked {
            quiet_min.push(fewest);
        }
    }

    eprintln!(
        "before each checked burst (target, warm, served warm): {warm_before:?}; \
         fewest warm in each quiet spell: {quiet_min:?}"
    );
    for (i, &(target, warm, served_warm)) in warm_before.iter().enumerate() {
        assert!(
            target >= 1.0 && warm >= target,
            "burst {i}: before it the pool target was {target} with {warm} warm instances \
             (all checked bursts: {warm_before:?}); log:\n{}",
            log()
        );
        assert!(
            served_warm >= 1 && served_warm as f64 >= target.min(BURST as f64),
            "burst {i}: {served_warm} of {BURST} invocations warm with a target of {target}"
        );
    }
    assert!(
        quiet_min.iter().all(|&w| w == 0.0),
        "instances should retire between bursts: fewest warm per quiet spell {quiet_min:?}"
    );
    let retired = agent
        .metric("synapse_instance_ends_total{function=\"f\",reason=\"retired\"}")
        .unwrap_or(0.0);
    assert!(retired >= CHECKED as f64, "retired instances: {retired}");
    // The forecast behind the target and its error are exported.
    assert!(gauge(&agent, "synapse_forecast_invocations").is_finite());
    assert!(
        agent
            .metric(
                "synapse_forecast_error{function=\"f\",forecaster=\"hybrid\",measure=\"smape\"}"
            )
            .is_some(),
        "forecast error not exported"
    );

    assert!(agent.stop(), "the agent exited with an error");
    assert!(
        !cgroup_v2_mount().join(&subtree).exists(),
        "cgroups left behind"
    );
}
