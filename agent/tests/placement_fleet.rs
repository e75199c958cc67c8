//! Cross-tier placement end to end: a real hub and three real agents (edge, regional, cloud)
//! on loopback, with declared latencies between tiers and declared pool memory per host. The
//! edge's users call `api` steadily; the edge can hold no pool, so the hub's plan keeps `api`
//! warm in the regional tier: the plan reaches the agents, the edge hands over (its pool
//! retires once the regional one is warm), and the edge's invocations are answered by the
//! regional agent, marked as forwarded. When the regional agent is lost the hub re-plans at
//! once, and the edge's invocations are answered from the cloud. No invocation fails on the
//! way. `api` initialises for 200 ms, so its cold start (measured by eBPF) costs users more
//! than a forwarding round trip; it works 150 ms per invocation and four users call it at
//! once, so the plan counts on more than one warm instance: the regional agent, which gains
//! it, is told so and warms that many — more than its `min_warm`. Agents forward to each
//! other's peer listeners, over mutual TLS with the fleet's agent certificates. Runs as root.

mod common;

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use common::*;

fn bin(name: &str) -> PathBuf {
    Path::new(AGENT).with_file_name(name)
}

struct Hub(Child);

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ctl(dir: &Path, console: u16, args: &[&str]) -> serde_json::Value {
    let ca = dir.join("ca");
    let out = Command::new(bin("synapsectl"))
        .arg("--hub")
        .arg(format!("https://127.0.0.1:{console}"))
        .arg("--ca")
        .arg(ca.join("ca.pem"))
        .arg("--cert")
        .arg(ca.join("ops.pem"))
        .arg("--key")
        .arg(ca.join("ops.key"))
        .args(["-o", "json"])
        .args(args)
        .output()
        .expect("synapsectl");
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

fn certs(dir: &Path, agents: &[&str]) {
    let ca = dir.join("ca");
    let ca_s = ca.to_str().unwrap();
    let run = |args: &[&str]| {
        let s = Command::new(bin("synapsectl"))
            .args(args)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(s.success(), "synapsectl {args:?}");
    };
    run(&["certs", "init", ca_s]);
    run(&[
        "certs",
        "issue",
        "--ca-dir",
        ca_s,
        "--role",
        "hub",
        "--name",
        "synapse-hub",
        "--ip",
        "127.0.0.1",
    ]);
    run(&[
        "certs", "issue", "--ca-dir", ca_s, "--role", "operator", "--name", "ops",
    ]);
    for a in agents {
        run(&[
            "certs", "issue", "--ca-dir", ca_s, "--role", "agent", "--name", a,
        ]);
    }
}

/// The agent's link, its declared pool memory and `api`.
fn start_agent(dir: &Path, id: &str, tier: &str, link: u16, pool_mb: u64) -> Agent {
    let api = format!(
        "[[functions]]\nname = \"api\"\ncommand = \"{SAMPLE_FN}\"\nargs = [\"--init-ms\", \"200\", \"--work-ms\", \"150\"]\nmemory_mb = 128\nmin_warm = 1\n\
         keep_alive = \"2s\"\nkeep_alive_min = \"1s\"\n"
    );
    start_agent_with(dir, id, tier, link, pool_mb, "20s", &api)
}

/// The agent's link, its declared pool memory, hand-over timeout and `functions` (TOML).
fn start_agent_with(
    dir: &Path,
    id: &str,
    tier: &str,
    link: u16,
    pool_mb: u64,
    handover: &str,
    functions: &str,
) -> Agent {
    let adir = dir.join(id);
    std::fs::create_dir_all(&adir).unwrap();
    let ca = dir.join("ca");
    let config = format!(
        "[link]\nhub = \"127.0.0.1:{link}\"\nca = \"{ca}/ca.pem\"\ncert = \"{ca}/{id}.pem\"\nkey = \"{ca}/{id}.key\"\n\n\
         [placement]\nmemory_mb = {pool_mb}\nhandover_timeout = \"{handover}\"\n\n{functions}",
        ca = ca.display()
    );
    // Unique per test: the tests of this file run at once in one process.
    let run = dir
        .file_name()
        .unwrap()
        .to_string_lossy()
        .trim_start_matches('.')
        .to_owned();
    let subtree = format!("synapse-place-{id}-{}-{run}", std::process::id());
    // Other agents forward to its peer listener, over mutual TLS with the fleet's agent
    // certificates; bound on a free port, which the agent declares to the hub.
    let peer = "peer_listen = \"127.0.0.1:0\"";
    Agent::start_with_gateway(&adir, free_ports(1), &subtree, id, tier, peer, &config)
}

/// An invocation of `function` at `a`'s gateway by a client claiming, in the header, to be
/// agent `claimed` forwarding it.
fn invoke_claiming(a: &Agent, function: &str, claimed: &str) -> Reply {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", a.gateway)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "POST /v1/functions/{function}/invoke HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         x-synapse-forwarded-by: {claimed}\r\nContent-Length: 1\r\n\r\nx"
    )
    .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let out = String::from_utf8_lossy(&out);
    Reply::parse(&out)
}

/// Starts a hub with placement re-planned every second and `placement` (TOML lines of
/// `[placement]` and below) after it; its log is `hub.log` in `dir`.
fn start_hub(dir: &Path, link: u16, console: u16, placement: &str) -> Hub {
    let ca = dir.join("ca");
    std::fs::write(
        dir.join("hub.toml"),
        format!(
            "data_dir = \"{data}\"\n[tls]\nca = \"{ca}/ca.pem\"\ncert = \"{ca}/synapse-hub.pem\"\nkey = \"{ca}/synapse-hub.key\"\n\
             [link]\nlisten = \"127.0.0.1:{link}\"\n[console]\nlisten = \"127.0.0.1:{console}\"\n[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n\
             [placement]\noptimization_interval = \"1s\"\nmax_moved_share = 1.0\n{placement}",
            data = dir.join("hub").display(),
            ca = ca.display(),
            metrics = free_ports(1),
        ),
    )
    .unwrap();
    Hub(Command::new(bin("synapse-hub"))
        .arg("--config")
        .arg(dir.join("hub.toml"))
        .env("RUST_LOG", "info")
        .stdout(std::fs::File::create(dir.join("hub.log")).unwrap())
        .spawn()
        .unwrap())
}

/// Ready instances of `function` the agent's gateway lists.
fn ready(a: &Agent, function: &str) -> usize {
    let listed: serde_json::Value = http_get(a.gateway, "/v1/functions")
        .and_then(|b| serde_json::from_str(&b).ok())
        .unwrap_or_default();
    listed
        .as_array()
        .and_then(|l| l.iter().find(|f| f["name"] == function))
        .and_then(|f| f["instances"].as_array())
        .map_or(0, |i| i.iter().filter(|i| i["state"] == "ready").count())
}

/// Hosts of `function` in the plan in force.
fn placed_on(d: &Path, console: u16, function: &str) -> Vec<String> {
    let plan = ctl(d, console, &["placement", "show"]);
    plan["functions"]
        .as_array()
        .and_then(|l| l.iter().find(|f| f["function"] == function))
        .and_then(|f| f["hosts"].as_array())
        .map(|h| {
            h.iter()
                .filter(|h| h["share"].as_f64().unwrap_or(0.0) > 0.5)
                .filter_map(|h| h["agent_id"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The log without terminal colours.
fn strip_ansi(log: &str) -> String {
    let mut out = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The lines that say `message`, with the number each logs as `field=N`.
fn logged(log: &str, message: &str, field: &str) -> Vec<(String, u64)> {
    strip_ansi(log)
        .lines()
        .filter(|l| l.contains(message))
        .filter_map(|line| {
            let (_, after) = line.split_once(&format!("{field}="))?;
            let n = after
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()?;
            Some((line.to_owned(), n))
        })
        .collect()
}

/// Stops `others`, then the edge agent its users shared (their threads joined by now).
fn stop_fleet(edge: Arc<Agent>, others: impl IntoIterator<Item = Agent>) {
    for agent in others {
        assert!(agent.stop());
    }
    match Arc::try_unwrap(edge) {
        Ok(edge) => assert!(edge.stop()),
        Err(_) => panic!("a user's thread still holds the edge agent"),
    }
}

#[test]
fn the_plan_reaches_the_agents_pools_follow_and_the_edge_forwards_to_the_warm_tier() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    certs(d, &["edge-1", "regional-1", "cloud-1"]);
    let (link, console) = (free_ports(1), free_ports(1));
    let _hub = start_hub(
        d,
        link,
        console,
        "[placement.cost_weights]\nresource_utilization = 0.01\ncost = 0.01\n\
         [[placement.declared_latency]]\ntiers = [\"edge\", \"regional\"]\nrtt = \"1ms\"\n\
         [[placement.declared_latency]]\ntiers = [\"edge\", \"cloud\"]\nrtt = \"5ms\"\n\
         [[placement.declared_latency]]\ntiers = [\"regional\", \"cloud\"]\nrtt = \"4ms\"\n",
    );
    let edge = Arc::new(start_agent(d, "edge-1", "edge", link, 0));
    let hub_log = || std::fs::read_to_string(d.join("hub.log")).unwrap_or_default();

    // The edge's users: four at once, each calling again 50 ms after an answer (about 15
    // invocations a second, 2 to 3 in flight), every answer kept; three of them leave once the
    // regional pool is warm, the steady one stays to the end.
    let stop = Arc::new(AtomicBool::new(false));
    let burst_over = Arc::new(AtomicBool::new(false));
    let replies: Arc<Mutex<Vec<Reply>>> = Arc::default();
    let users: Vec<_> = (0..4)
        .map(|user| {
            let stop = if user == 0 {
                stop.clone()
            } else {
                burst_over.clone()
            };
            std::thread::spawn({
                let (edge, stop, replies) = (edge.clone(), stop, replies.clone());
                move || {
                    while !stop.load(Ordering::Relaxed) {
                        let reply = edge.invoke("api", "", b"x");
                        replies.lock().unwrap().push(reply);
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            })
        })
        .collect();
    // The edge alone measures its users' demand first: the plan counts on more than one
    // warm instance of `api` before the other tiers join.
    edge.wait_until("the plan counts on two instances of api", |_| {
        let explained = ctl(d, console, &["placement", "explain", "api"]);
        explained["instances"].as_f64().unwrap_or(0.0) >= 2.0
    });
    let regional = start_agent(d, "regional-1", "regional", link, 4000);
    let cloud = start_agent(d, "cloud-1", "cloud", link, 64_000);
    let forwarded_to = |who: &str| {
        replies
            .lock()
            .unwrap()
            .iter()
            .any(|r| r.header("x-synapse-forwarded-to") == Some(who))
    };

    edge.wait_until("api planned warm in the regional tier", |_| {
        placed_on(d, console, "api") == ["regional-1"]
    });
    edge.wait_until("the edge hands over and its pool retires", |e| {
        ready(&regional, "api") >= 1 && ready(e, "api") == 0
    });
    edge.wait_until("an edge invocation answered by the regional agent", |_| {
        forwarded_to("regional-1")
    });
    // Pre-warm the new: the regional agent, which gained `api`, was told the instances the
    // plan counts on there and holds them, more than its `min_warm` of 1.
    let gained = logged(&regional.log(), "function gained", "warm_instances");
    assert!(
        gained.iter().any(|(_, n)| *n >= 2),
        "regional warm-up: {gained:?}\n{}",
        regional.log()
    );
    edge.wait_until("the regional pool holds the plan's instances", |_| {
        ready(&regional, "api") >= 2
    });
    burst_over.store(true, Ordering::Relaxed);
    edge.wait_until(
        "the cloud, which kept api warm before the plan, retires its pool",
        |_| ready(&cloud, "api") == 0,
    );
    let explained = ctl(d, console, &["placement", "explain", "api"]);
    let summary = explained["summary"].as_str().unwrap_or_default().to_owned();
    assert!(summary.contains("regional-1"), "{explained}\n{}", hub_log());
    assert!(
        explained["forecast_per_s"].as_f64().unwrap_or(0.0) > 1.0,
        "{explained}"
    );
    assert!(
        explained["cold_start_s"].as_f64().unwrap_or(0.0) > 0.0,
        "measured by eBPF: {explained}"
    );

    // The regional agent is lost: the hub re-plans without waiting for the interval, and the
    // edge keeps answering (from the new plan's tier, or itself when none answers).
    let answered_before = replies.lock().unwrap().len();
    assert!(regional.stop());
    edge.wait_until("a plan made because a host was lost", |_| {
        let history = ctl(d, console, &["placement", "history"]);
        history
            .as_array()
            .is_some_and(|plans| plans.iter().any(|p| p["reason"] == "host lost"))
    });
    edge.wait_until("api planned away from the lost host", |_| {
        !placed_on(d, console, "api").contains(&"regional-1".to_string())
    });
    edge.wait_until("api planned in the cloud, the next closest tier", |_| {
        placed_on(d, console, "api") == ["cloud-1"]
    });
    edge.wait_until("an edge invocation answered by the cloud agent", |_| {
        forwarded_to("cloud-1")
    });
    edge.wait_until("more edge invocations answered", |_| {
        replies.lock().unwrap().len() > answered_before + 20
    });
    stop.store(true, Ordering::Relaxed);
    burst_over.store(true, Ordering::Relaxed);
    for user in users {
        user.join().unwrap();
    }

    let replies = replies.lock().unwrap();
    let failed: Vec<&Reply> = replies.iter().filter(|r| r.status != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of {} edge invocations failed, first: {:?}\nhub log:\n{}",
        failed.len(),
        replies.len(),
        failed.first(),
        hub_log()
    );
    drop(replies);
    stop_fleet(edge, [cloud]);
}

/// Pre-warm the new before retiring the old: `slow`, which takes 3 s to initialise, is warm
/// at the edge, the only host, until a cloud host joins whose memory costs nothing; the plan
/// moves `slow` there. The cloud holds no instance of it before the plan (`min_warm = 0`, no
/// traffic), so it starts one when told; the edge keeps serving from its own warm pool until
/// the cloud's gateway lists that instance ready, and only then forwards. No user waits for a
/// cold start on the way: every answer after the edge was warm says `warm`. Runs as root.
#[test]
fn a_host_that_loses_a_function_serves_it_warm_until_the_gainer_is_ready() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    certs(d, &["edge-1", "cloud-1"]);
    let (link, console) = (free_ports(1), free_ports(1));
    let _hub = start_hub(
        d,
        link,
        console,
        "[placement.cost_weights]\nuser_latency = 1.0\nresource_utilization = 0.01\ncost = 1.0\n\
         [placement.cost_per_gb_s]\nedge = 1.0\nregional = 0.5\ncloud = 0.0\n\
         [[placement.declared_latency]]\ntiers = [\"edge\", \"cloud\"]\nrtt = \"1ms\"\n",
    );
    let slow = |min_warm: u32| {
        format!(
            "[[functions]]\nname = \"slow\"\ncommand = \"{SAMPLE_FN}\"\nargs = [\"--init-ms\", \"3000\", \"--work-ms\", \"20\"]\n\
             memory_mb = 128\nmin_warm = {min_warm}\nkeep_alive = \"60s\"\n"
        )
    };
    // A hand-over timeout far beyond the test: the edge forwards because the cloud is ready.
    let edge = Arc::new(start_agent_with(
        d,
        "edge-1",
        "edge",
        link,
        4000,
        "600s",
        &slow(1),
    ));
    let hub_log = || std::fs::read_to_string(d.join("hub.log")).unwrap_or_default();

    // One user, calling again 100 ms after each answer; every answer kept.
    let stop = Arc::new(AtomicBool::new(false));
    let replies: Arc<Mutex<Vec<Reply>>> = Arc::default();
    let user = std::thread::spawn({
        let (edge, stop, replies) = (edge.clone(), stop.clone(), replies.clone());
        move || {
            while !stop.load(Ordering::Relaxed) {
                let reply = edge.invoke("slow", "", b"x");
                replies.lock().unwrap().push(reply);
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    });
    let forwarded_to = |who: &str| {
        replies
            .lock()
            .unwrap()
            .iter()
            .any(|r| r.header("x-synapse-forwarded-to") == Some(who))
    };

    edge.wait_until("slow planned warm at the edge", |_| {
        placed_on(d, console, "slow") == ["edge-1"]
    });
    edge.wait_until("the edge's pool is warm and answering", |e| {
        ready(e, "slow") >= 1
            && replies
                .lock()
                .unwrap()
                .last()
                .is_some_and(|r| r.header("x-synapse-start") == Some("warm"))
    });
    let warm_from = replies.lock().unwrap().len();

    let cloud = start_agent_with(d, "cloud-1", "cloud", link, 64_000, "600s", &slow(0));
    edge.wait_until("slow planned warm in the cloud", |_| {
        placed_on(d, console, "slow") == ["cloud-1"]
    });
    edge.wait_until("an edge invocation answered by the cloud agent", |_| {
        forwarded_to("cloud-1")
    });
    let forwarding_from = replies.lock().unwrap().len();
    edge.wait_until("more edge invocations answered by the cloud", |_| {
        replies.lock().unwrap().len() > forwarding_from + 10
    });
    stop.store(true, Ordering::Relaxed);
    user.join().unwrap();

    // The cloud started its instance when the plan reached it, not before.
    let gained = logged(&cloud.log(), "function gained", "warm_instances");
    assert!(
        gained
            .iter()
            .any(|(line, n)| line.contains("slow") && *n >= 1),
        "cloud warm-up: {gained:?}\n{}",
        cloud.log()
    );
    // Served here while the cloud warmed, there after: every answer came from a warm
    // instance.
    let replies = replies.lock().unwrap();
    let local = replies[warm_from..forwarding_from]
        .iter()
        .filter(|r| r.header("x-synapse-forwarded-to").is_none())
        .count();
    assert!(local > 0, "the edge served while the cloud warmed");
    let not_warm: Vec<&Reply> = replies[warm_from..]
        .iter()
        .filter(|r| r.status != 200 || r.header("x-synapse-start") != Some("warm"))
        .collect();
    assert!(
        not_warm.is_empty(),
        "{} of {} answers since the edge was warm were not warm, first: {:?}\nhub log:\n{}",
        not_warm.len(),
        replies.len() - warm_from,
        not_warm.first(),
        hub_log()
    );
    drop(replies);
    // The edge handed over because the cloud listed a ready instance, not at its timeout.
    let edge_log = strip_ansi(&edge.log());
    let handovers: Vec<&str> = edge_log
        .lines()
        .filter(|l| l.contains("placement hand-over: forwarding from now on"))
        .collect();
    assert!(
        handovers.len() == 1
            && handovers[0].contains("ready=true")
            && logged(handovers[0], "hand-over", "target_ready_instances")
                .iter()
                .any(|(_, n)| *n >= 1),
        "{handovers:?}\n{edge_log}"
    );
    stop_fleet(edge, [cloud]);
}

/// Where the planner puts functions, with real agents: `api` is called ten times a second at
/// the edge and small; `report` is called every two seconds, takes 900 MB and 1.5 s to
/// start. With the default weights and prices and 80 ms between edge and cloud, `api` is kept
/// warm at the edge, where its users are, and `report` in the cloud — it would fill the
/// edge's 1 GB of pool, and a forwarding round trip costs its users less than its cold start.
/// The edge serves `api` itself and forwards `report`. Runs as root.
#[test]
fn a_latency_sensitive_function_is_warm_at_the_edge_and_a_large_rare_one_in_the_cloud() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    certs(d, &["edge-1", "cloud-1"]);
    let (link, console) = (free_ports(1), free_ports(1));
    let _hub = start_hub(
        d,
        link,
        console,
        "[[placement.declared_latency]]\ntiers = [\"edge\", \"cloud\"]\nrtt = \"80ms\"\n",
    );
    let functions = format!(
        "[[functions]]\nname = \"api\"\ncommand = \"{SAMPLE_FN}\"\nargs = [\"--init-ms\", \"200\", \"--work-ms\", \"5\"]\n\
         memory_mb = 128\n\n\
         [[functions]]\nname = \"report\"\ncommand = \"{SAMPLE_FN}\"\nargs = [\"--init-ms\", \"1500\", \"--work-ms\", \"50\"]\n\
         memory_mb = 900\n"
    );
    let edge = Arc::new(start_agent_with(
        d, "edge-1", "edge", link, 1000, "20s", &functions,
    ));
    let cloud = start_agent_with(d, "cloud-1", "cloud", link, 64_000, "20s", &functions);
    let hub_log = || std::fs::read_to_string(d.join("hub.log")).unwrap_or_default();

    let stop = Arc::new(AtomicBool::new(false));
    let replies: Arc<Mutex<Vec<(&'static str, Reply)>>> = Arc::default();
    let users: Vec<_> = [("api", 100), ("report", 2000)]
        .into_iter()
        .map(|(function, pause_ms)| {
            std::thread::spawn({
                let (edge, stop, replies) = (edge.clone(), stop.clone(), replies.clone());
                move || {
                    while !stop.load(Ordering::Relaxed) {
                        let reply = edge.invoke(function, "", b"x");
                        replies.lock().unwrap().push((function, reply));
                        std::thread::sleep(Duration::from_millis(pause_ms));
                    }
                }
            })
        })
        .collect();
    let forwarded = |function: &str, to: &str| {
        replies
            .lock()
            .unwrap()
            .iter()
            .any(|(f, r)| *f == function && r.header("x-synapse-forwarded-to") == Some(to))
    };

    edge.wait_until("api planned warm at the edge, report in the cloud", |_| {
        placed_on(d, console, "api") == ["edge-1"] && placed_on(d, console, "report") == ["cloud-1"]
    });
    edge.wait_until("report answered from the cloud", |_| {
        forwarded("report", "cloud-1")
    });
    edge.wait_until("both pools warm where planned", |e| {
        ready(e, "api") >= 1 && ready(&cloud, "report") >= 1
    });
    // A client claiming to be an agent forwarding the invocation is a client all the same:
    // its invocation goes where the plan sends report.
    edge.wait_until("a client's claim of forwarding ignored", |e| {
        let reply = invoke_claiming(e, "report", "cloud-1");
        assert_eq!(reply.status, 200, "{reply:?}");
        reply.header("x-synapse-forwarded-to") == Some("cloud-1")
    });
    let plan_in_force = replies.lock().unwrap().len();
    edge.wait_until("more answers under the plan", |_| {
        replies.lock().unwrap().len() > plan_in_force + 20
    });
    stop.store(true, Ordering::Relaxed);
    for user in users {
        user.join().unwrap();
    }

    let replies = replies.lock().unwrap();
    let failed: Vec<_> = replies.iter().filter(|(_, r)| r.status != 200).collect();
    assert!(failed.is_empty(), "{failed:?}\n{}", hub_log());
    // Under the plan, the edge answers api itself.
    let api_forwarded = replies[plan_in_force..]
        .iter()
        .filter(|(f, r)| *f == "api" && r.header("x-synapse-forwarded-to").is_some())
        .count();
    assert_eq!(api_forwarded, 0, "api forwarded away from its users");
    let explained = ctl(d, console, &["placement", "explain", "report"]);
    assert!(
        explained["cold_start_s"].as_f64().unwrap_or(0.0) > 1.0,
        "report's cold start, measured by eBPF: {explained}"
    );
    drop(replies);
    stop_fleet(edge, [cloud]);
}
