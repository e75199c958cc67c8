//! The runtime with real processes behind the gateway: cold and warm invocations, pre-warmed
//! pools, keep-alive, crashes, instances that never become ready, memory limits, concurrency,
//! the gateway's own answers, and a clean stop. Runs as root.

mod common;

use std::collections::BTreeSet;

use common::*;

struct Fixture {
    agent: Agent,
    _dir: tempfile::TempDir,
    subtree: String,
}

fn start(name: &str, functions: &str) -> Fixture {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let subtree = format!("synapse-test-{name}-{}", std::process::id());
    // These tests pin the pool's mechanics under each function's own keep-alive and
    // min_warm; the forecast policies have tests of their own (live_policy.rs).
    let config = format!("{functions}[policy]\nname = \"fixed-keepalive\"\n");
    let agent = Agent::start(dir.path(), free_ports(1), &subtree, &config);
    Fixture {
        agent,
        _dir: dir,
        subtree,
    }
}

fn function(name: &str, args: &str, extra: &str) -> String {
    format!(
        "[[functions]]\nname = \"{name}\"\ncommand = \"{SAMPLE_FN}\"\nargs = [{args}]\n{extra}\n\n"
    )
}

impl Fixture {
    /// Stops the agent and checks that nothing of ours is left: no cgroup, no process; and
    /// that every instance was stopped by its own task (with the grace period), none cut off
    /// with the runtime it ran on. Returns the agent's log.
    fn stop_clean(self, pids: &[u64]) -> String {
        let log = self.agent.dir.join("agent.log");
        assert!(self.agent.stop(), "the agent exited with an error");
        let log = std::fs::read_to_string(log).unwrap_or_default();
        assert!(
            !log.contains("instance task failed"),
            "an instance task did not end by itself:\n{log}"
        );
        let ours = cgroup_v2_mount().join(&self.subtree);
        assert!(!ours.exists(), "cgroups left in {}", ours.display());
        for pid in pids {
            // Gone, or the pid already reused by some other program.
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            assert!(
                !status.contains("Name:\tsynapse-sample"),
                "instance process {pid} is still there"
            );
        }
        log
    }
}

fn pid(r: &Reply) -> u64 {
    r.json()["pid"].as_u64().expect("pid in the answer")
}

#[test]
fn first_call_is_cold_and_second_warm() {
    let fx = start("coldwarm", &function("f", "\"--init-ms\", \"300\"", ""));
    let first = fx.agent.invoke("f", "", b"hello");
    assert_eq!(first.status, 200, "{first:?}");
    assert_eq!(first.header("x-synapse-start"), Some("cold"));
    assert_eq!(first.json()["bytes"], 5);
    let second = fx.agent.invoke("f", "", b"hello");
    assert_eq!(second.header("x-synapse-start"), Some("warm"));
    assert_eq!(
        pid(&first),
        pid(&second),
        "the warm call reuses the instance"
    );
    assert!(
        fx.agent
            .metric("synapse_invocations_total{function=\"f\",start=\"cold\"}")
            == Some(1.0)
    );
    // Started by the invocation on a gateway thread, stopped by the agent's stop.
    let log = fx.stop_clean(&[pid(&first)]);
    assert!(
        log.lines()
            .any(|l| l.contains("instance stopped") && l.contains("i0") && l.contains("stopped")),
        "no graceful stop of the cold-started instance in:\n{log}"
    );
}

#[test]
fn a_prewarmed_pool_makes_the_first_call_warm() {
    let fx = start(
        "prewarm",
        &function("f", "\"--init-ms\", \"200\"", "min_warm = 1"),
    );
    fx.agent.wait_until("one warm instance", |a| {
        a.metric("synapse_warm_instances{function=\"f\"}") == Some(1.0)
    });
    let r = fx.agent.invoke("f", "", b"");
    assert_eq!(r.header("x-synapse-start"), Some("warm"), "{r:?}");
    fx.stop_clean(&[pid(&r)]);
}

#[test]
fn keep_alive_retires_idle_instances() {
    let fx = start("keepalive", &function("f", "", "keep_alive = \"1s\""));
    let r = fx.agent.invoke("f", "", b"");
    assert_eq!(r.status, 200);
    fx.agent.wait_until("the idle instance retired", |a| {
        a.metric("synapse_instance_ends_total{function=\"f\",reason=\"retired\"}") == Some(1.0)
            && a.metric("synapse_warm_instances{function=\"f\"}") == Some(0.0)
    });
    assert!(
        fx.agent
            .metric("synapse_idle_memory_mb_seconds_total{function=\"f\"}")
            .unwrap()
            > 0.0
    );
    let again = fx.agent.invoke("f", "", b"");
    assert_eq!(again.header("x-synapse-start"), Some("cold"));
    assert_ne!(pid(&r), pid(&again));
    fx.stop_clean(&[pid(&r), pid(&again)]);
}

#[test]
fn an_invocation_held_by_a_crashing_instance_is_retried_once() {
    let marker = tempfile::tempdir().unwrap();
    // The instances run as their function's own uid: they make the marker in a folder open
    // to them.
    std::fs::set_permissions(
        marker.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let file = marker.path().join("crashed");
    let args = format!("\"--crash-once-file\", \"{}\"", file.display());
    let fx = start("crash", &function("f", &args, ""));
    // The first instance dies holding the invocation; a second one answers it.
    let r = fx.agent.invoke("f", "", b"abc");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["bytes"], 3);
    fx.agent.wait_until("the crash reported", |a| {
        a.metric("synapse_instance_ends_total{function=\"f\",reason=\"crashed\"}") == Some(1.0)
    });
    // An invocation that kills every instance gets a clear error after one retry.
    let bad = fx.agent.invoke("f", "?crash", b"");
    assert_eq!(bad.status, 502, "{bad:?}");
    assert!(
        bad.json()["error"].as_str().unwrap().contains("failed"),
        "{bad:?}"
    );
    let ok = fx.agent.invoke("f", "", b"");
    assert_eq!(ok.status, 200);
    fx.stop_clean(&[pid(&r), pid(&ok)]);
}

#[test]
fn an_instance_that_never_becomes_ready_gives_a_clear_error() {
    let fx = start(
        "neverready",
        &function(
            "f",
            "\"--init-ms\", \"600000\"",
            "ready_timeout = \"1s\"\nqueue_timeout = \"20s\"",
        ),
    );
    let r = fx.agent.invoke("f", "", b"");
    assert_eq!(r.status, 503, "{r:?}");
    assert!(r.header("retry-after").is_some());
    let msg = r.json()["error"].as_str().unwrap().to_string();
    assert!(
        msg.contains("did not listen within ready_timeout (1s)"),
        "{msg}"
    );
    assert!(
        fx.agent
            .metric("synapse_instance_ends_total{function=\"f\",reason=\"never_ready\"}")
            .unwrap()
            >= 3.0
    );
    fx.stop_clean(&[]);
}

#[test]
fn the_memory_limit_is_enforced_and_reported() {
    let fx = start("memory", &function("f", "", "memory_mb = 64"));
    let small = fx.agent.invoke("f", "?alloc_mb=8", b"");
    assert_eq!(small.status, 200, "{small:?}");
    let big = fx.agent.invoke("f", "?alloc_mb=256", b"");
    assert_eq!(big.status, 502, "{big:?}");
    fx.agent.wait_until("the kill reported", |a| {
        a.metric("synapse_instance_ends_total{function=\"f\",reason=\"out_of_memory\"}")
            .unwrap_or(0.0)
            >= 1.0
    });
    assert!(
        fx.agent.log().contains("OutOfMemory"),
        "the log names the reason"
    );
    fx.stop_clean(&[pid(&small)]);
}

#[test]
fn a_hundred_concurrent_invocations_respect_concurrency_limits() {
    let fx = start(
        "concurrent",
        &function(
            "f",
            "\"--init-ms\", \"100\", \"--work-ms\", \"30\"",
            "concurrency = 2\nmax_instances = 4\nqueue_limit = 200\nqueue_timeout = \"30s\"",
        ),
    );
    let gateway = fx.agent.gateway;
    let handles: Vec<_> = (0..100u32)
        .map(|i| {
            std::thread::spawn(move || {
                let body = vec![(i % 200) as u8 + 1; i as usize + 1];
                let r = http_post(gateway, "/v1/functions/f/invoke", &body);
                (i, body, r)
            })
        })
        .collect();
    let mut pids = BTreeSet::new();
    for h in handles {
        let (i, body, r) = h.join().unwrap();
        assert_eq!(r.status, 200, "invocation {i}: {r:?}");
        let v = r.json();
        assert_eq!(
            v["bytes"].as_u64(),
            Some(body.len() as u64),
            "invocation {i}"
        );
        let sum: u64 = body.iter().map(|&b| u64::from(b)).sum();
        assert_eq!(
            v["sum"].as_u64(),
            Some(sum),
            "invocation {i} got another's answer"
        );
        assert!(
            v["in_flight"].as_u64().unwrap() <= 2,
            "more than 2 at once on one instance"
        );
        pids.insert(v["pid"].as_u64().unwrap());
    }
    assert!(
        pids.len() <= 4,
        "{} instances for max_instances = 4",
        pids.len()
    );
    fx.stop_clean(&pids.into_iter().collect::<Vec<_>>());
}

#[test]
fn the_gateway_answers_unknown_functions_large_bodies_and_full_queues() {
    let fx = start(
        "gateway",
        &function(
            "f",
            "\"--init-ms\", \"1500\"",
            "max_request_bytes = 16\nqueue_limit = 1\nmax_instances = 1",
        ),
    );
    assert_eq!(fx.agent.invoke("nope", "", b"").status, 404);
    assert_eq!(fx.agent.invoke("f", "", &[0u8; 17]).status, 413);
    let gateway = fx.agent.gateway;
    let waiting = std::thread::spawn(move || http_post(gateway, "/v1/functions/f/invoke", b"1"));
    fx.agent.wait_until("one queued", |a| {
        a.metric("synapse_queue_depth{function=\"f\"}") == Some(1.0)
    });
    let full = fx.agent.invoke("f", "", b"2");
    assert_eq!(full.status, 503, "{full:?}");
    assert_eq!(full.header("retry-after"), Some("1"));
    let first = waiting.join().unwrap();
    assert_eq!(first.status, 200);
    fx.stop_clean(&[pid(&first)]);
}

#[test]
fn what_a_killed_agent_left_is_cleaned_at_the_next_start() {
    let fx = start("crashed-agent", &function("f", "", "min_warm = 1"));
    fx.agent.wait_until("one warm instance", |a| {
        a.metric("synapse_warm_instances{function=\"f\"}") == Some(1.0)
    });
    let left = pid(&fx.agent.invoke("f", "", b""));
    let Fixture {
        agent,
        _dir,
        subtree,
    } = fx;
    agent.kill9();
    let ours = cgroup_v2_mount().join(&subtree);
    assert!(ours.exists(), "the killed agent's cgroups are still there");
    assert!(
        std::path::Path::new(&format!("/proc/{left}")).exists(),
        "its instance still runs"
    );

    let dir = tempfile::tempdir().unwrap();
    let next = Agent::start(dir.path(), free_ports(1), &subtree, "");
    // Gone, or dead and waiting for init to reap it (its parent, the old agent, is gone).
    let status = std::fs::read_to_string(format!("/proc/{left}/status")).unwrap_or_default();
    assert!(
        !status.contains("Name:\tsynapse-sample") || status.contains("State:\tZ"),
        "the old instance was not killed: {status}"
    );
    assert!(!ours.exists(), "the old cgroups were not removed");
    assert!(
        next.log()
            .contains("removed cgroups left by an agent that did not stop cleanly")
    );
    assert!(next.stop());
}
