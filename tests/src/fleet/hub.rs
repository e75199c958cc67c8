//! A `synapse-hub` process in its own network namespace, listening for agents on its bridge
//! address and serving its console and metrics on that namespace's loopback; it can be
//! killed with SIGKILL and started again on the same store. `synapsectl` runs in the hub's
//! namespace to read the console.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Child,
    sync::Arc,
    time::Duration,
};

use serde_json::Value;

use super::{Pki, bin, http_get, sample};
use crate::{netns::Netns, wait_for};

/// The link's UDP port on the hub's bridge address.
pub const LINK_PORT: u16 = 7443;
const CONSOLE: &str = "127.0.0.1:7444";
const METRICS: &str = "127.0.0.1:9465";

pub struct Hub {
    ns: Arc<Netns>,
    pki: Pki,
    config: PathBuf,
    log: PathBuf,
    /// Where agents reach it: `BRIDGE_IP:PORT`.
    pub link: String,
    child: Option<Child>,
    /// SIGKILLs so far.
    pub kills: u32,
    /// Resent batches recognised as held, by the hub processes killed so far.
    dedup_before: f64,
}

impl Hub {
    /// Writes the configuration (`extra`: more TOML tables at its end) and starts the hub.
    /// Placement is off: each agent serves its own traffic, so its counts are its own.
    pub fn start(ns: Arc<Netns>, dir: &Path, pki: &Pki, ip: &str, extra: &str) -> Self {
        let link = format!("{ip}:{LINK_PORT}");
        let config = dir.join("hub.toml");
        let text = format!(
            "hub_id = \"netns-hub\"\ndata_dir = {data:?}\n\n[tls]\nca = {ca:?}\ncert = {cert:?}\nkey = {key:?}\n\n\
             [link]\nlisten = \"{link}\"\nheartbeat_interval = \"500ms\"\n\n\
             [console]\nlisten = \"{CONSOLE}\"\n\n[metrics]\nlisten = \"{METRICS}\"\n\n\
             [placement]\nenabled = false\n\n{extra}",
            data = dir.join("hub-data"),
            ca = pki.ca(),
            cert = pki.cert("synapse-hub"),
            key = pki.key("synapse-hub"),
        );
        std::fs::write(&config, text).unwrap();
        let mut hub = Self {
            ns,
            pki: pki.clone(),
            config,
            log: dir.join("hub.log"),
            link,
            child: None,
            kills: 0,
            dedup_before: 0.0,
        };
        hub.spawn();
        hub
    }

    /// Starts the process on its store and waits until its metrics endpoint answers.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "the hub already runs");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = self
            .ns
            .command(bin("synapse-hub"))
            .arg("--config")
            .arg(&self.config)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("synapse-hub starts");
        self.child = Some(child);
        wait_for("the hub to serve metrics", Duration::from_secs(30), || {
            self.metrics()
        });
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        self.dedup_before += self.metrics().map_or(0.0, |m| {
            sample(&m, "synapse_hub_dedup_hits_total").unwrap_or(0.0)
        });
        let mut child = self.child.take().expect("the hub runs");
        child.kill().unwrap();
        child.wait().unwrap();
        self.kills += 1;
    }

    /// Resent batches the hub recognised as already held, over every process it ran as.
    pub fn dedup_hits(&self) -> u64 {
        (self.dedup_before + self.metric("synapse_hub_dedup_hits_total")) as u64
    }

    /// Agent connections the hub accepted, over every process it ran as (from its log).
    pub fn connections(&self) -> usize {
        self.log().matches("agent connected").count()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The metrics page, when the hub answers.
    pub fn metrics(&self) -> Option<String> {
        let addr: SocketAddr = METRICS.parse().unwrap();
        self.ns.run(|| http_get(addr, "/metrics"))
    }

    /// One sample of the metrics page (`name{labels}`), 0 when absent.
    pub fn metric(&self, name_and_labels: &str) -> f64 {
        let text = self.metrics().expect("the hub's metrics endpoint answers");
        sample(&text, name_and_labels).unwrap_or(0.0)
    }

    /// `synapsectl -o json ARGS` as the operator, run in the hub's namespace: the parsed
    /// answer, or the error it printed.
    pub fn try_ctl(&self, args: &[&str]) -> Result<Value, String> {
        let out = self
            .ns
            .command(bin("synapsectl"))
            .args(["--hub", &format!("https://{CONSOLE}"), "--ca"])
            .arg(self.pki.ca())
            .arg("--cert")
            .arg(self.pki.cert("ops"))
            .arg("--key")
            .arg(self.pki.key("ops"))
            .args(["-o", "json"])
            .args(args)
            .output()
            .expect("synapsectl starts");
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
    }

    /// [`Hub::try_ctl`] that fails the test on an error.
    pub fn ctl(&self, args: &[&str]) -> Value {
        self.try_ctl(args)
            .unwrap_or_else(|e| panic!("synapsectl {args:?}: {e}"))
    }

    /// `synapsectl agents`: the fleet as the hub sees it.
    pub fn agents(&self) -> Vec<Value> {
        match self.ctl(&["agents"]) {
            Value::Array(agents) => agents,
            other => panic!("synapsectl agents: {other}"),
        }
    }

    /// Waits until `ids` are all connected.
    pub fn wait_connected(&self, ids: &[&str], limit: Duration) {
        wait_for("every agent connected to the hub", limit, || {
            let agents = self.try_ctl(&["agents"]).ok()?;
            ids.iter()
                .all(|id| {
                    agents.as_array().is_some_and(|l| {
                        l.iter()
                            .any(|a| a["agent_id"] == *id && a["connected"] == true)
                    })
                })
                .then_some(())
        });
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
