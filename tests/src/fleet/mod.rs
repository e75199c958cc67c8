//! A fleet of real processes for the cross-crate tests: the workspace's binaries (found next
//! to the test executable), a CA and certificates made with `synapsectl certs`, a `synapse-hub`
//! ([`Hub`]) and `synapse-agent`s ([`Agent`]) each in its own network namespace, which can be
//! killed with SIGKILL and restarted on their stores, traffic from `synapse-agent drive`
//! ([`Drive`]), and the comparison of what each agent recorded with what the hub counted
//! ([`ledger`]).
//!
//! Every server listens on a fixed port inside its own private namespace, where nothing else
//! runs; so two runs side by side never compete for a port.

mod agent;
mod hub;
pub mod ledger;

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

pub use agent::Agent;
pub use hub::Hub;

use crate::netns::Netns;

/// The Azure 2019 sample the drives replay (shared on this machine, as for the learning tests).
pub const TRACE: &str = "/work/shared/traces/azure2019-500fn-8h";

/// A binary of the workspace: `target/<profile>/NAME`, beside the directory of the test
/// executable (`target/<profile>/deps`). The workspace's `cargo test` builds them (the hub's
/// and the agent's integration tests need them); a test of this crate alone does not.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let profile = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test executable lives in target/<profile>/deps");
    let path = profile.join(name);
    assert!(
        path.is_file(),
        "{} is missing: build the workspace's binaries first \
         (`cargo build --locked --bins`, or the workspace's `cargo test`, which builds them)",
        path.display()
    );
    path
}

/// A fleet CA and certificates, made by `synapsectl certs`.
#[derive(Debug, Clone)]
pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    /// A CA in `dir`, a hub certificate named `synapse-hub` (the name agents and synapsectl
    /// check), an operator certificate `ops`, and one agent certificate per name.
    pub fn new(dir: PathBuf, agents: &[&str]) -> Self {
        let pki = Self { dir };
        pki.synapsectl(&["certs", "init", pki.dir.to_str().unwrap()]);
        pki.issue("hub", "synapse-hub");
        pki.issue("operator", "ops");
        for agent in agents {
            pki.issue("agent", agent);
        }
        pki
    }

    fn synapsectl(&self, args: &[&str]) {
        let out = Command::new(bin("synapsectl"))
            .args(args)
            .output()
            .expect("synapsectl starts");
        assert!(
            out.status.success(),
            "synapsectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn issue(&self, role: &str, name: &str) {
        let dir = self.dir.to_str().unwrap();
        self.synapsectl(&[
            "certs", "issue", "--ca-dir", dir, "--role", role, "--name", name,
        ]);
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    pub fn cert(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.pem"))
    }

    pub fn key(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.key"))
    }
}

/// `GET path` over HTTP/1.0 from the current namespace; the body of a 200 answer, else `None`.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.split_whitespace()
        .nth(1)
        .is_some_and(|code| code == "200")
        .then(|| body.to_owned())
}

/// The value of one Prometheus sample (`name{labels}` as printed) in `text`, if present.
pub fn sample(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        line.strip_prefix(name_and_labels)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Waits for `child` at most `limit`, then kills it; whether it exited by itself with 0.
pub fn wait_or_kill(child: &mut Child, limit: Duration) -> bool {
    let deadline = std::time::Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.success(),
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
}

/// What a [`Drive`] replays: `functions` functions of [`TRACE`] for `minutes` trace minutes
/// at `speed` trace seconds per second, at most `max_per_minute` invocations a minute each;
/// picked function k is invoked as `PREFIX{k}`.
#[derive(Debug, Clone)]
pub struct DrivePlan {
    pub prefix: String,
    pub functions: usize,
    pub minutes: usize,
    pub speed: f64,
    pub max_per_minute: u32,
}

/// `synapse-agent drive` in an agent's namespace, against its gateway.
pub struct Drive {
    child: Option<Child>,
    summary: PathBuf,
    log: PathBuf,
}

impl Drive {
    pub fn start(ns: &Netns, dir: &Path, gateway: SocketAddr, plan: &DrivePlan) -> Self {
        let summary = dir.join(format!("drive-{}.json", plan.prefix));
        let log = dir.join(format!("drive-{}.log", plan.prefix));
        let child = ns
            .command(bin("synapse-agent"))
            .args(["drive", "--trace", TRACE, "--gateway", &gateway.to_string()])
            .args(["--prefix", &plan.prefix])
            .args(["--functions", &plan.functions.to_string()])
            .args(["--minutes", &plan.minutes.to_string()])
            .args(["--speed", &plan.speed.to_string()])
            .args(["--max-per-minute", &plan.max_per_minute.to_string()])
            .arg("--json")
            .arg(&summary)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("synapse-agent drive starts");
        Self {
            child: Some(child),
            summary,
            log,
        }
    }

    /// Waits for the drive to end (at most `limit`) and returns its JSON summary.
    pub fn finish(mut self, limit: Duration) -> serde_json::Value {
        let mut child = self.child.take().expect("the drive runs");
        let ok = wait_or_kill(&mut child, limit);
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        assert!(ok, "synapse-agent drive failed or outran {limit:?}:\n{log}");
        let text = std::fs::read_to_string(&self.summary).expect("the drive's summary");
        serde_json::from_str(&text).expect("the drive's summary is JSON")
    }
}

impl Drop for Drive {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
