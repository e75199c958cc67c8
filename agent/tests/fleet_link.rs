//! A hub and three real agents (edge, regional, cloud) on loopback: what each agent recorded
//! reaches the hub exactly once, also when one agent is killed with SIGKILL and restarted, and
//! `synapsectl agents -o json` shows the three agents with their tiers. Placement is off, so
//! each agent serves what it is sent and the counts compared are its own. Runs as root.

mod common;

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
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
    for a in ["edge-1", "regional-1", "cloud-1"] {
        run(&[
            "certs", "issue", "--ca-dir", ca_s, "--role", "agent", "--name", a,
        ]);
    }
}

fn agent_config(dir: &Path, id: &str, tier: &str, link: u16) -> String {
    let ca = dir.join("ca");
    format!(
        "[link]\nhub = \"127.0.0.1:{link}\"\nca = \"{ca}/ca.pem\"\ncert = \"{ca}/{id}.pem\"\nkey = \"{ca}/{id}.key\"\n\n\
         [[functions]]\nname = \"fn-{tier}\"\ncommand = \"{SAMPLE_FN}\"\nmin_warm = 1\n",
        ca = ca.display()
    )
}

/// Each agent keeps its state in its own folder, so a restarted agent finds its outbox.
fn start_agent(dir: &Path, id: &str, tier: &str, link: u16) -> Agent {
    let adir = dir.join(id);
    std::fs::create_dir_all(&adir).unwrap();
    let subtree = format!("synapse-fleet-{id}-{}", std::process::id());
    Agent::start_with(
        &adir,
        free_ports(1),
        &subtree,
        id,
        tier,
        &agent_config(dir, id, tier, link),
    )
}

#[test]
fn telemetry_reaches_the_hub_exactly_once_from_three_tiers() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    certs(d);
    let (link, console, metrics) = (free_ports(1), free_ports(1), free_ports(1));
    let ca = d.join("ca");
    std::fs::write(
        d.join("hub.toml"),
        format!(
            "data_dir = \"{data}\"\n[tls]\nca = \"{ca}/ca.pem\"\ncert = \"{ca}/synapse-hub.pem\"\nkey = \"{ca}/synapse-hub.key\"\n\
             [link]\nlisten = \"127.0.0.1:{link}\"\n[console]\nlisten = \"127.0.0.1:{console}\"\n[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n\
             [placement]\nenabled = false\n",
            data = d.join("hub").display(),
            ca = ca.display()
        ),
    )
    .unwrap();
    let _hub = Hub(Command::new(bin("synapse-hub"))
        .arg("--config")
        .arg(d.join("hub.toml"))
        .stderr(std::fs::File::create(d.join("hub.log")).unwrap())
        .spawn()
        .unwrap());
    let tiers = [
        ("edge-1", "edge", 7),
        ("regional-1", "regional", 5),
        ("cloud-1", "cloud", 3),
    ];
    let mut agents: Vec<Agent> = tiers
        .iter()
        .map(|(id, tier, _)| start_agent(d, id, tier, link))
        .collect();
    for ((_, tier, n), a) in tiers.iter().zip(&agents) {
        for _ in 0..*n {
            assert_eq!(a.invoke(&format!("fn-{tier}"), "", b"x").status, 200);
        }
    }
    // The edge agent dies without a word and comes back with its state.
    let edge = agents.remove(0);
    edge.wait_until("edge invocations stored", |a| {
        let v: serde_json::Value =
            serde_json::from_str(&a.get("/v1/telemetry").unwrap_or_default()).unwrap_or_default();
        v["fn-edge"]["totals"]["invocations"].as_u64() == Some(7)
    });
    edge.kill9();
    let edge = start_agent(d, "edge-1", "edge", link);
    for _ in 0..4 {
        assert_eq!(edge.invoke("fn-edge", "", b"x").status, 200);
    }
    agents.insert(0, edge);

    // What each agent recorded, from its own store.
    let recorded = |a: &Agent, f: &str| -> u64 {
        let v: serde_json::Value =
            serde_json::from_str(&a.get("/v1/telemetry").unwrap_or_default()).unwrap_or_default();
        v[f]["totals"]["invocations"].as_u64().unwrap_or(0)
    };
    let expected = [("fn-edge", 11u64), ("fn-regional", 5), ("fn-cloud", 3)];
    agents[0].wait_until("the hub has every interval once", |_| {
        let fleet = ctl(d, console, &["functions"]);
        expected.iter().zip(&agents).all(|((f, n), a)| {
            let at_hub = fleet
                .as_array()
                .and_then(|l| l.iter().find(|x| x["function"] == *f))
                .and_then(|x| x["invocations"].as_u64());
            recorded(a, f) == *n && at_hub == Some(*n)
        })
    });
    let listed = ctl(d, console, &["agents"]);
    let mut seen: Vec<(String, String)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["agent_id"].as_str().unwrap().to_string(),
                a["tier"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            ("cloud-1".to_string(), "cloud".to_string()),
            ("edge-1".to_string(), "edge".to_string()),
            ("regional-1".to_string(), "regional".to_string())
        ]
    );
    for a in agents {
        assert!(a.stop());
    }
}
