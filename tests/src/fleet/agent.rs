//! A real `synapse-agent` in its own network namespace: sample functions under its own cgroup
//! subtree, its gateway and metrics on that namespace's loopback, and a link to the hub's
//! bridge address that notices a dead connection within a couple of seconds. It can be
//! killed with SIGKILL and started again on its store (its outbox included).

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Child,
    sync::Arc,
    time::Duration,
};

use serde_json::Value;

use super::{Pki, bin, http_get, wait_or_kill};
use crate::{netns::Netns, wait_for};

const GATEWAY: &str = "127.0.0.1:8080";
const METRICS: &str = "127.0.0.1:9464";

pub struct Agent {
    pub id: String,
    pub tier: String,
    pub ns: Arc<Netns>,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    /// SIGKILLs so far.
    pub kills: u32,
}

impl Agent {
    /// Writes the agent's configuration in `dir/ID/` and starts it. Each of `functions` runs
    /// the sample function with one warm instance.
    pub fn start(
        ns: Arc<Netns>,
        dir: &Path,
        pki: &Pki,
        (id, tier): (&str, &str),
        hub: &str,
        functions: &[String],
    ) -> Self {
        Self::start_with(ns, dir, pki, (id, tier), hub, functions, "2s")
    }

    /// [`Agent::start`] with the link's idle timeout: QUIC takes the shorter of the two ends',
    /// so it is also how long the hub keeps the connection of an agent it no longer hears.
    pub fn start_with(
        ns: Arc<Netns>,
        dir: &Path,
        pki: &Pki,
        (id, tier): (&str, &str),
        hub: &str,
        functions: &[String],
        idle_timeout: &str,
    ) -> Self {
        let home = dir.join(id);
        std::fs::create_dir_all(&home).unwrap();
        let sample_fn = bin("synapse-sample-fn");
        let mut text = format!(
            "[agent]\nid = \"{id}\"\ntier = \"{tier}\"\nstate_dir = {state:?}\n\n\
             [telemetry]\ninterval = \"1s\"\n\n[metrics]\nlisten = \"{METRICS}\"\n\n\
             [gateway]\nlisten = \"{GATEWAY}\"\n\n\
             [cgroup]\nsubtree = \"synapse-netns-{pid}-{id}\"\n\n\
             [link]\nhub = \"{hub}\"\nca = {ca:?}\ncert = {cert:?}\nkey = {key:?}\n\
             idle_timeout = \"{idle_timeout}\"\nheartbeat_interval = \"500ms\"\nconnect_timeout = \"2s\"\n\
             reconnect_initial = \"100ms\"\nreconnect_max = \"1s\"\n",
            state = home.join("state"),
            pid = std::process::id(),
            ca = pki.ca(),
            cert = pki.cert(id),
            key = pki.key(id),
        );
        for name in functions {
            text.push_str(&format!(
                "\n[[functions]]\nname = \"{name}\"\ncommand = {sample_fn:?}\nmin_warm = 1\n"
            ));
        }
        let config = home.join("agent.toml");
        std::fs::write(&config, text).unwrap();
        let mut agent = Self {
            id: id.into(),
            tier: tier.into(),
            ns,
            config,
            log: home.join("agent.log"),
            child: None,
            kills: 0,
        };
        agent.spawn();
        agent
    }

    /// Starts the process on its store and waits until its metrics endpoint answers.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "{} already runs", self.id);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = self
            .ns
            .command(bin("synapse-agent"))
            .args(["run", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("synapse-agent starts");
        self.child = Some(child);
        let addr: SocketAddr = METRICS.parse().unwrap();
        wait_for(
            &format!("{}'s metrics endpoint", self.id),
            Duration::from_secs(60),
            || {
                if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                    panic!("{} exited with {status}:\n{}", self.id, self.log());
                }
                self.ns.run(|| http_get(addr, "/healthz"))
            },
        );
    }

    /// The gateway's address in the agent's namespace.
    pub fn gateway(&self) -> SocketAddr {
        GATEWAY.parse().unwrap()
    }

    /// SIGKILL, as a crash would: its instances are left for the next start to clean.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("the agent runs");
        child.kill().unwrap();
        child.wait().unwrap();
        self.kills += 1;
    }

    /// SIGTERM, waiting for a clean exit (its instances stopped, its cgroups removed).
    pub fn stop(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        // SAFETY: plain syscall on our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        wait_or_kill(&mut child, Duration::from_secs(30))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the agent stored an interval that began at `unix_ms` or later: everything it
    /// counted before that instant is then in its totals.
    pub fn closed_since(&self, unix_ms: i64) -> bool {
        let addr: SocketAddr = METRICS.parse().unwrap();
        let Some(body) = self
            .ns
            .run(|| http_get(addr, &format!("/v1/telemetry?since_ms={unix_ms}")))
        else {
            return false;
        };
        serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| {
                v.as_object().map(|functions| {
                    functions
                        .values()
                        .any(|f| f["intervals"].as_array().is_some_and(|i| !i.is_empty()))
                })
            })
            .unwrap_or(false)
    }

    /// `/v1/telemetry`: what the agent recorded in its store, per function.
    pub fn telemetry(&self) -> Option<Value> {
        let addr: SocketAddr = METRICS.parse().unwrap();
        // Only the totals are compared; the intervals since the future are none.
        let body = self
            .ns
            .run(|| http_get(addr, "/v1/telemetry?since_ms=9000000000000"))?;
        serde_json::from_str(&body).ok()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        // A clean stop, also when the test failed, so no instance or cgroup stays behind.
        self.stop();
    }
}
