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

use std::{
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use common::*;
use serde_json::Value;

const AGENTS: [(&str, &str); 4] = [
    ("edge-1", "edge"),
    ("edge-2", "edge"),
    ("regional-1", "regional"),
    ("cloud-1", "cloud"),
];

fn bin(name: &str) -> PathBuf {
    Path::new(AGENT).with_file_name(name)
}

struct Hub(Child);

impl Hub {
    /// SIGTERM, as a restart by the service manager would; waits for the hub to exit.
    fn stop(mut self) {
        // SAFETY: plain syscall on our child.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Fleet {
    dir: PathBuf,
    console: u16,
}

impl Fleet {
    fn ctl(&self, args: &[&str]) -> Value {
        let mut json = vec!["-o", "json"];
        json.extend_from_slice(args);
        let out = self.ctl_text(&json);
        serde_json::from_str(&out).unwrap_or(Value::String(out))
    }

    /// synapsectl's output as printed for people (stderr when it failed).
    fn ctl_text(&self, args: &[&str]) -> String {
        let ca = self.dir.join("ca");
        let out = Command::new(bin("synapsectl"))
            .arg("--hub")
            .arg(format!("https://127.0.0.1:{}", self.console))
            .arg("--ca")
            .arg(ca.join("ca.pem"))
            .arg("--cert")
            .arg(ca.join("ops.pem"))
            .arg("--key")
            .arg(ca.join("ops.key"))
            .args(args)
            .output()
            .expect("synapsectl");
        if out.status.success() {
            String::from_utf8_lossy(&out.stdout).into_owned()
        } else {
            String::from_utf8_lossy(&out.stderr).into_owned()
        }
    }

    /// Starts a rollout of fn-a at `version` running the sample function with `args`.
    fn start(&self, version: &str, args: &str, bake: &str) -> String {
        let spec = format!(
            "name = \"fn-a\"\nversion = \"{version}\"\ncommand = \"{SAMPLE_FN}\"\nargs = [{args}]\nmin_warm = 1\n"
        );
        self.start_spec(version, &spec, bake)
    }

    /// Starts a rollout of fn-a at `version` with the spec `text`.
    fn start_spec(&self, version: &str, text: &str, bake: &str) -> String {
        let spec = self.dir.join(format!("fn-a-{version}.toml"));
        std::fs::write(&spec, text).unwrap();
        let out = self.ctl(&[
            "rollouts",
            "start",
            "fn-a",
            "--version",
            version,
            "--payload",
            spec.to_str().unwrap(),
            "--steps",
            "1/tier,100%",
            "--bake",
            bake,
            "--reason",
            "test",
        ]);
        out[0]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("start refused: {out}"))
            .to_owned()
    }

    fn status(&self, id: &str) -> Value {
        self.ctl(&["rollouts", "status", id])[0].clone()
    }

    /// Polls the rollout until `cond` holds (a bound on waiting, not a timing assertion).
    fn wait(&self, id: &str, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            let status = self.status(id);
            if cond(&status) {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "gave up waiting for {what}: {status:#}\nhub log:\n{}",
                std::fs::read_to_string(self.dir.join("hub.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn start_hub(&self, link: u16, metrics: u16) -> Hub {
        let ca = self.dir.join("ca");
        std::fs::write(
            self.dir.join("hub.toml"),
            format!(
                "data_dir = \"{data}\"\n[tls]\nca = \"{ca}/ca.pem\"\ncert = \"{ca}/synapse-hub.pem\"\nkey = \"{ca}/synapse-hub.key\"\n\
                 [link]\nlisten = \"127.0.0.1:{link}\"\n[console]\nlisten = \"127.0.0.1:{console}\"\n[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n\
                 [rollouts]\ntick = \"200ms\"\n[rollouts.gates]\nmin_invocations = 5\n",
                data = self.dir.join("hub").display(),
                ca = ca.display(),
                console = self.console,
            ),
        )
        .unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("hub.log"))
            .unwrap();
        Hub(Command::new(bin("synapse-hub"))
            .arg("--config")
            .arg(self.dir.join("hub.toml"))
            .stderr(log)
            .spawn()
            .unwrap())
    }
}

fn certs(dir: &Path) {
    let ca = dir.join("ca");
    let run = |args: &[&str]| {
        let s = Command::new(bin("synapsectl"))
            .args(args)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(s.success(), "synapsectl {args:?}");
    };
    let ca_s = ca.to_str().unwrap();
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
    for (a, _) in AGENTS {
        run(&[
            "certs", "issue", "--ca-dir", ca_s, "--role", "agent", "--name", a,
        ]);
    }
}

fn start_agent(dir: &Path, id: &str, tier: &str, link: u16) -> Agent {
    let adir = dir.join(id);
    std::fs::create_dir_all(&adir).unwrap();
    let ca = dir.join("ca");
    let config = format!(
        "[link]\nhub = \"127.0.0.1:{link}\"\nca = \"{ca}/ca.pem\"\ncert = \"{ca}/{id}.pem\"\nkey = \"{ca}/{id}.key\"\n\n\
         [[functions]]\nname = \"fn-a\"\ncommand = \"{SAMPLE_FN}\"\nmin_warm = 1\n",
        ca = ca.display()
    );
    let subtree = format!("synapse-roll-{id}-{}", std::process::id());
    Agent::start_with(&adir, free_ports(1), &subtree, id, tier, &config)
}

/// Invokes fn-a on every gateway, round after round, until dropped.
struct Traffic {
    stop: Arc<AtomicBool>,
    gateways: Arc<Mutex<Vec<u16>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Traffic {
    fn start(gateways: Vec<u16>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let gateways = Arc::new(Mutex::new(gateways));
        let (flag, ports) = (stop.clone(), gateways.clone());
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                let round = ports.lock().unwrap().clone();
                for port in round {
                    // A gateway that is away (an agent restarting) is skipped.
                    if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                        http_post(port, "/v1/functions/fn-a/invoke", b"x");
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Self {
            stop,
            gateways,
            thread: Some(thread),
        }
    }

    fn set_gateways(&self, gateways: Vec<u16>) {
        *self.gateways.lock().unwrap() = gateways;
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn hosts_running(status: &Value) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = status["hosts"]
        .as_array()
        .map(|hosts| {
            hosts
                .iter()
                .map(|h| {
                    (
                        h["agent_id"].as_str().unwrap_or_default().to_owned(),
                        h["running"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn all_running(status: &Value, version: &str) -> bool {
    let hosts = hosts_running(status);
    hosts.len() == 4 && hosts.iter().all(|(_, v)| v == version)
}

fn events(status: &Value) -> Vec<(String, u64)> {
    status["history"]
        .as_array()
        .map(|h| {
            h.iter()
                .map(|e| {
                    (
                        e["event"].as_str().unwrap_or_default().to_owned(),
                        e["step"].as_u64().unwrap_or(99),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

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
    assert!(gate["updated"].as_f64().unwrap() > 0.5, "{gate:#}");
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
    let id = fleet.start("6", "", "4s");
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
