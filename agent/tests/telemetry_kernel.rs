//! The agent's eBPF telemetry against the real kernel: real processes in per-function
//! cgroups that initialise for a known time before `listen()`, then serve a known number of
//! connections, while a busy process outside those cgroups is ignored.
//!
//! Runs as root (it loads eBPF programs and creates cgroups).

mod common;

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use common::*;

/// A function whose pool holds `instances` instances that initialise for `init_ms`.
fn function(name: &str, init_ms: u64, instances: u32) -> String {
    format!(
        "[[functions]]\nname = \"{name}\"\ncommand = \"{SAMPLE_FN}\"\n\
         args = [\"--init-ms\", \"{init_ms}\"]\nmin_warm = {instances}\nmax_instances = {instances}\n\
         concurrency = 4\nkeep_alive = \"1h\"\n\n"
    )
}

fn hit(port: u16, times: usize) {
    for _ in 0..times {
        assert!(http_get(port, "/").is_some(), "no answer on port {port}");
    }
}

fn invoke_n(agent: &Agent, function: &str, times: usize) {
    for _ in 0..times {
        let r = agent.invoke(function, "", b"x");
        assert_eq!(r.status, 200, "{r:?}");
    }
}

fn stored(agent: &Agent, function: &str) -> serde_json::Value {
    let body = agent
        .get(&format!("/v1/telemetry?function={function}"))
        .expect("telemetry API");
    serde_json::from_str::<serde_json::Value>(&body).unwrap()[function].clone()
}

/// Min and max cold-start latency over every stored interval of a function.
fn cold_start_range(agent: &Agent, function: &str) -> (f64, f64, u64) {
    let v = stored(agent, function);
    let mut lo = f64::MAX;
    let mut hi = 0.0f64;
    let mut n = 0;
    for iv in v["intervals"].as_array().unwrap() {
        let h = &iv["cold_start"];
        let count = h["count"].as_u64().unwrap();
        if count > 0 {
            lo = lo.min(h["min_s"].as_f64().unwrap());
            hi = hi.max(h["max_s"].as_f64().unwrap());
            n += count;
        }
    }
    (lo, hi, n)
}

/// The largest `ready_within_s` the function's instances report (see `synapse-sample-fn`),
/// each asked directly at its address from the gateway's listing.
fn ready_within(agent: &Agent, function: &str) -> f64 {
    let listing: serde_json::Value =
        serde_json::from_str(&http_get(agent.gateway, "/v1/functions").expect("listing")).unwrap();
    let pool = listing
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == function)
        .expect("the function is listed");
    let mut bound = 0.0f64;
    for instance in pool["instances"].as_array().unwrap() {
        let addr = instance["addr"]
            .as_str()
            .expect("a ready instance's address");
        let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
        let body = http_get(port, "/").expect("the instance answers");
        let v: serde_json::Value = serde_json::from_str(body.trim()).unwrap();
        let within = v["ready_within_s"].as_f64().unwrap();
        assert!(
            within > 0.0,
            "{function}: the instance could not read its clocks: {v}"
        );
        bound = bound.max(within);
    }
    bound
}

#[test]
fn invocations_and_cold_starts_are_measured_in_the_kernel() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let metrics = free_ports(1);
    let busy_port = free_ports(1);
    let subtree = format!("synapse-test-{}", std::process::id());
    let config = function("fast", 150, 2) + &function("slow", 400, 1);
    let agent = Agent::start(dir.path(), metrics, &subtree, &config);

    // A busy process of the same program outside the agent's cgroups.
    let mut busy = Command::new(SAMPLE_FN)
        .args(["--listen", &format!("127.0.0.1:{busy_port}")])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();

    agent.wait_until("three instances ready", |a| {
        a.metric("synapse_cold_starts_total{function=\"fast\"}") == Some(2.0)
            && a.metric("synapse_cold_starts_total{function=\"slow\"}") == Some(1.0)
    });
    hit(busy_port, 1); // make sure the busy process listens before it is hammered
    let (k_fast, k_slow, k_busy) = (37, 23, 300);
    let busy_load = std::thread::spawn(move || hit(busy_port, k_busy));
    invoke_n(&agent, "fast", k_fast);
    invoke_n(&agent, "slow", k_slow);
    busy_load.join().unwrap();

    agent.wait_until("every invocation counted", |a| {
        a.metric("synapse_kernel_accepts_total{function=\"fast\"}") == Some(k_fast as f64)
            && a.metric("synapse_kernel_accepts_total{function=\"slow\"}") == Some(k_slow as f64)
    });
    // Two more seconds for anything late (the busy process) to show up if it were counted.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        agent.metric("synapse_kernel_accepts_total{function=\"fast\"}"),
        Some(k_fast as f64)
    );
    assert_eq!(
        agent.metric("synapse_kernel_accepts_total{function=\"slow\"}"),
        Some(k_slow as f64)
    );
    assert_eq!(
        agent.metric("synapse_cold_starts_total{function=\"fast\"}"),
        Some(2.0)
    );
    assert_eq!(
        agent.metric("synapse_cold_starts_total{function=\"slow\"}"),
        Some(1.0)
    );
    assert_eq!(
        agent.metric("synapse_instances{function=\"fast\"}"),
        Some(2.0)
    );
    assert_eq!(agent.metric("synapse_ebpf_events_lost_total"), Some(0.0));
    // The gateway saw the same invocations, all warm: the pools were pre-warmed.
    assert_eq!(
        agent.metric("synapse_invocations_total{function=\"fast\",start=\"warm\"}"),
        Some(k_fast as f64)
    );

    let stored_invocations: u64 = stored(&agent, "fast")["intervals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|iv| iv["invocations"].as_u64().unwrap())
        .sum();
    assert_eq!(stored_invocations, k_fast as u64);

    // Cold-start latency, exec → listen, from the stored intervals: at least the known
    // init delay, and at most what each instance itself saw between its creation and the
    // return of its listen() (so the bound holds however loaded the machine is). The
    // instances are asked last: these direct connections are accepts of their own.
    agent.wait_until("intervals stored", |a| {
        cold_start_range(a, "slow").2 == 1 && cold_start_range(a, "fast").2 == 2
    });
    for (name, delay) in [("fast", 0.150), ("slow", 0.400)] {
        let (lo, hi, _) = cold_start_range(&agent, name);
        let bound = ready_within(&agent, name);
        eprintln!(
            "{name}: init {delay} s, measured cold starts {lo:.4}..{hi:.4} s, \
             instances ready within {bound:.4} s of their creation"
        );
        assert!(
            lo >= delay && hi <= bound,
            "{name}: cold starts in [{lo:.3}, {hi:.3}] s, expected within [{delay}, {bound:.3}] s"
        );
    }

    let _ = busy.kill();
    let _ = busy.wait();
    assert!(agent.stop(), "agent exited with an error");
    let ours = cgroup_v2_mount().join(&subtree);
    assert!(!ours.exists(), "cgroups left behind in {}", ours.display());
}

#[test]
fn telemetry_survives_an_agent_restart() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let metrics = free_ports(1);
    let subtree = format!("synapse-test-restart-{}", std::process::id());
    let config = function("echo", 50, 1);
    let agent = Agent::start(dir.path(), metrics, &subtree, &config);
    agent.wait_until("ready", |a| {
        a.metric("synapse_cold_starts_total{function=\"echo\"}") == Some(1.0)
    });
    invoke_n(&agent, "echo", 5);
    agent.wait_until("counted", |a| {
        a.metric("synapse_kernel_accepts_total{function=\"echo\"}") == Some(5.0)
    });
    assert!(agent.stop());

    let agent = Agent::start(dir.path(), metrics, &subtree, &config);
    // Counters continue from the stored totals, and the first run's intervals are still there.
    agent.wait_until("second instance ready", |a| {
        a.metric("synapse_cold_starts_total{function=\"echo\"}") == Some(2.0)
    });
    assert_eq!(
        agent.metric("synapse_kernel_accepts_total{function=\"echo\"}"),
        Some(5.0)
    );
    invoke_n(&agent, "echo", 2);
    agent.wait_until("counted after restart", |a| {
        a.metric("synapse_kernel_accepts_total{function=\"echo\"}") == Some(7.0)
    });
    let stored = stored(&agent, "echo");
    let before_restart: u64 = stored["intervals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|iv| iv["invocations"].as_u64().unwrap())
        .sum();
    assert!(before_restart >= 5, "stored invocations {before_restart}");
    assert!(agent.stop());
}
