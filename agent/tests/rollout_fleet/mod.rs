//! The fleet of the rollout tests: a hub and four agents with their certificates, synapsectl
//! calls, a background client invoking every gateway, and readers of a rollout's status.

#![allow(dead_code)]

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

use super::common::*;
use serde_json::Value;

pub const AGENTS: [(&str, &str); 4] = [
    ("edge-1", "edge"),
    ("edge-2", "edge"),
    ("regional-1", "regional"),
    ("cloud-1", "cloud"),
];

pub fn bin(name: &str) -> PathBuf {
    Path::new(AGENT).with_file_name(name)
}

pub struct Hub(Child);

impl Hub {
    /// SIGTERM, as a restart by the service manager would; waits for the hub to exit.
    pub fn stop(mut self) {
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

pub struct Fleet {
    pub dir: PathBuf,
    pub console: u16,
}

impl Fleet {
    pub fn ctl(&self, args: &[&str]) -> Value {
        let mut json = vec!["-o", "json"];
        json.extend_from_slice(args);
        let out = self.ctl_text(&json);
        serde_json::from_str(&out).unwrap_or(Value::String(out))
    }

    /// synapsectl's output as printed for people (stderr when it failed).
    pub fn ctl_text(&self, args: &[&str]) -> String {
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
    pub fn start(&self, version: &str, args: &str, bake: &str) -> String {
        let spec = format!(
            "name = \"fn-a\"\nversion = \"{version}\"\ncommand = \"{SAMPLE_FN}\"\nargs = [{args}]\nmin_warm = 1\n"
        );
        self.start_spec(version, &spec, bake)
    }

    /// Starts a rollout of fn-a at `version` with the spec `text`.
    pub fn start_spec(&self, version: &str, text: &str, bake: &str) -> String {
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

    pub fn status(&self, id: &str) -> Value {
        self.ctl(&["rollouts", "status", id])[0].clone()
    }

    /// Polls the rollout until `cond` holds (a bound on waiting, not a timing assertion).
    pub fn wait(&self, id: &str, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
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

    /// The hub, with placement off: the gates compare hosts that serve their own users, which
    /// forwarding to another tier would hide.
    pub fn start_hub(&self, link: u16, metrics: u16) -> Hub {
        self.start_hub_with(link, metrics, "")
    }

    /// The hub as [`Fleet::start_hub`] has it, with `extra` TOML tables appended.
    pub fn start_hub_with(&self, link: u16, metrics: u16, extra: &str) -> Hub {
        let ca = self.dir.join("ca");
        std::fs::write(
            self.dir.join("hub.toml"),
            format!(
                "data_dir = \"{data}\"\n[tls]\nca = \"{ca}/ca.pem\"\ncert = \"{ca}/synapse-hub.pem\"\nkey = \"{ca}/synapse-hub.key\"\n\
                 [link]\nlisten = \"127.0.0.1:{link}\"\n[console]\nlisten = \"127.0.0.1:{console}\"\n[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n\
                 [rollouts]\ntick = \"200ms\"\n[rollouts.gates]\nmin_invocations = 5\n\
                 [placement]\nenabled = false\n{extra}",
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

pub fn certs(dir: &Path) {
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

pub fn start_agent(dir: &Path, id: &str, tier: &str, link: u16) -> Agent {
    start_agent_with(dir, id, tier, link, "", "")
}

/// An agent of the fleet; `link_extra` goes in its `[link]` table, `extra` (TOML tables)
/// after fn-a's.
pub fn start_agent_with(
    dir: &Path,
    id: &str,
    tier: &str,
    link: u16,
    link_extra: &str,
    extra: &str,
) -> Agent {
    let adir = dir.join(id);
    std::fs::create_dir_all(&adir).unwrap();
    let ca = dir.join("ca");
    let config = format!(
        "[link]\nhub = \"127.0.0.1:{link}\"\nca = \"{ca}/ca.pem\"\ncert = \"{ca}/{id}.pem\"\nkey = \"{ca}/{id}.key\"\n{link_extra}\n\
         [[functions]]\nname = \"fn-a\"\ncommand = \"{SAMPLE_FN}\"\nmin_warm = 1\n{extra}",
        ca = ca.display()
    );
    let subtree = format!("synapse-roll-{id}-{}", std::process::id());
    Agent::start_with(&adir, free_ports(1), &subtree, id, tier, &config)
}

/// Invokes fn-a on every gateway, round after round, until dropped.
pub struct Traffic {
    stop: Arc<AtomicBool>,
    gateways: Arc<Mutex<Vec<u16>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Traffic {
    pub fn start(gateways: Vec<u16>) -> Self {
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

    pub fn set_gateways(&self, gateways: Vec<u16>) {
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

pub fn hosts_running(status: &Value) -> Vec<(String, String)> {
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

pub fn all_running(status: &Value, version: &str) -> bool {
    let hosts = hosts_running(status);
    hosts.len() == 4 && hosts.iter().all(|(_, v)| v == version)
}

pub fn events(status: &Value) -> Vec<(String, u64)> {
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
