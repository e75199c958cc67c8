//! The revocation list, honoured while the hub runs: an operator whose certificate is added
//! (`synapsectl certs revoke`) is refused on its next calls, with a clear error, without a
//! restart, and a watch stream it opened before ends; a bad line is reported as FILE:LINE and
//! the list in force stays; the refusal is audited; a clean list lets it back. An agent whose
//! certificate is revoked is cut off and cannot reconnect, while the rest of the fleet keeps
//! reporting. `synapse-hub --check` reads the list as the start does.

mod support;

use std::{path::Path, time::Duration};

use support::{Agent, Hub, Pki, console, run_ok, wait_for};
use synapse_proto::console::v1::{WatchRequest, console_client::ConsoleClient};
use tonic::Code;

const LIMIT: Duration = Duration::from_secs(20);

fn revoke(pki: &Pki, list: &Path, who: &str, fingerprint: bool) {
    let mut command = std::process::Command::new(support::CTL);
    command.args(["certs", "revoke"]).arg(pki.cert(who));
    command.arg("--list").arg(list);
    if fingerprint {
        command.arg("--fingerprint");
    }
    run_ok(&mut command);
}

fn agents_as(hub: &Hub, pki: &Pki, who: &str) -> Result<String, String> {
    let output = hub.ctl(pki, who).args(["agents"]).output().unwrap();
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

#[test]
fn a_revoked_operator_is_refused_without_a_restart() {
    let root = tempfile::tempdir().unwrap();
    let pki = Pki::init(root.path().join("pki"));
    pki.issue("hub", "synapse-hub");
    pki.issue("operator", "alice");
    pki.issue("operator", "bob");
    let list = root.path().join("revoked.txt");
    std::fs::write(&list, "# revoked console and agent certificates\n").unwrap();
    let hub = Hub::start_configured(root.path(), &pki, &format!("revoked = {list:?}\n"), "");
    agents_as(&hub, &pki, "alice").expect("alice is an operator");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut watching = runtime.block_on(async {
        let channel = console::channel(&hub, &pki, "alice").await;
        ConsoleClient::new(channel)
            .watch(WatchRequest::default())
            .await
            .expect("alice watches the fleet")
            .into_inner()
    });

    revoke(&pki, &list, "alice", false);
    let refusal = wait_for("alice to be refused", LIMIT, || {
        agents_as(&hub, &pki, "alice").err()
    });
    assert!(
        refusal.contains("synapse://operator/alice is revoked") && refusal.contains("serial"),
        "{refusal}"
    );
    agents_as(&hub, &pki, "bob").expect("bob is not revoked");
    // The stream alice opened before is cut off too.
    let ended = runtime.block_on(async {
        loop {
            match tokio::time::timeout(LIMIT, watching.message()).await {
                Ok(Ok(Some(_))) => continue,
                Ok(Ok(None)) => panic!("alice's watch ended without an error"),
                Ok(Err(status)) => break status,
                Err(_) => panic!("alice's watch was not cut off"),
            }
        }
    });
    assert_eq!(ended.code(), Code::Unauthenticated, "{ended}");
    assert!(ended.message().contains("revoked"), "{ended}");

    // A bad line: reported as FILE:LINE, and alice stays revoked.
    let mut text = std::fs::read_to_string(&list).unwrap();
    text.push_str("not-a-serial\n");
    std::fs::write(&list, &text).unwrap();
    let at = format!("{}:3:", list.display());
    wait_for("the bad line to be reported", LIMIT, || {
        hub.log().contains(&at).then_some(())
    });
    assert!(agents_as(&hub, &pki, "alice").is_err());

    // The refused attempts are audited.
    let output = run_ok(hub.ctl(&pki, "bob").args(["audit", "-o", "json"]));
    let entries: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();
    let refused = entries
        .iter()
        .find(|e| e["name"] == "alice" && e["refused"] == true)
        .unwrap_or_else(|| panic!("alice's refused call is audited: {entries:#?}"));
    assert_eq!(refused["outcome"], "UNAUTHENTICATED");
    assert_eq!(refused["role"], "operator");
    assert!(
        refused["rpc"]
            .as_str()
            .unwrap()
            .ends_with("Console/ListAgents")
    );
    assert!(refused["message"].as_str().unwrap().contains("revoked"));

    // A clean list without alice lets her back, still without a restart.
    std::fs::write(&list, "# nobody\n").unwrap();
    wait_for("alice to be let back", LIMIT, || {
        agents_as(&hub, &pki, "alice").ok()
    });
}

#[test]
fn a_revoked_agent_is_cut_off_and_cannot_reconnect() {
    let root = tempfile::tempdir().unwrap();
    let pki = Pki::init(root.path().join("pki"));
    pki.issue("hub", "synapse-hub");
    pki.issue("operator", "operator");
    pki.issue("agent", "edge-1");
    pki.issue("agent", "edge-2");
    let list = root.path().join("revoked.txt");
    std::fs::write(&list, "").unwrap();
    let hub = Hub::start_configured(root.path(), &pki, &format!("revoked = {list:?}\n"), "");
    let _agents: Vec<Agent> = ["edge-1", "edge-2"]
        .iter()
        .map(|id| Agent::start(root.path(), &pki, &hub, id, "edge", 100_000, 20))
        .collect();
    let agent = |id: &str| {
        hub.agents(&pki)
            .into_iter()
            .find(|a| a["agent_id"] == id)
            .unwrap_or_default()
    };
    wait_for("both agents to connect", LIMIT, || {
        (agent("edge-1")["connected"] == true && agent("edge-2")["connected"] == true).then_some(())
    });

    revoke(&pki, &list, "edge-1", true);
    let refused = "synapse_hub_connections_refused_total{reason=\"revoked\"}";
    wait_for("edge-1 to be cut off and refused again", LIMIT, || {
        (agent("edge-1")["connected"] == false && hub.metric(refused) >= 1.0).then_some(())
    });
    let batches = agent("edge-1")["batches_accepted"].as_u64().unwrap();
    let seen = hub.metric(refused);
    wait_for("edge-1 to try again", LIMIT, || {
        (hub.metric(refused) >= seen + 2.0).then_some(())
    });
    let cut = agent("edge-1");
    assert_eq!(cut["connected"], false, "{cut}");
    assert_eq!(cut["batches_accepted"].as_u64().unwrap(), batches, "{cut}");
    let log = hub.log();
    assert!(log.contains("link closed: certificate revoked"), "{log}");

    // The rest of the fleet keeps reporting.
    let other = agent("edge-2")["batches_accepted"].as_u64().unwrap();
    wait_for("edge-2 to keep reporting", LIMIT, || {
        let now = agent("edge-2");
        (now["connected"] == true && now["batches_accepted"].as_u64().unwrap() > other)
            .then_some(())
    });
}

#[test]
fn the_check_reads_the_revocation_list_as_the_start_does() {
    let root = tempfile::tempdir().unwrap();
    let list = root.path().join("revoked.txt");
    let config = root.path().join("hub.toml");
    std::fs::write(
        &config,
        format!("[console]\nrevoked = {list:?}\naudit_keep = 10\n"),
    )
    .unwrap();
    let check = || {
        let output = std::process::Command::new(support::HUB)
            .arg("--check")
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stderr).into_owned();
        (output.status.success(), text)
    };
    let (ok, text) = check();
    assert!(!ok, "a missing list passes the check");
    assert!(text.contains("revoked.txt"), "{text}");
    std::fs::write(&list, "# header\n1a2b\nserial:xyz\n").unwrap();
    let (ok, text) = check();
    assert!(!ok, "a bad line passes the check");
    assert!(text.contains(&format!("{}:3:", list.display())), "{text}");
    std::fs::write(&list, "# header\n1a2b\n").unwrap();
    assert!(check().0, "a good list fails the check");
    std::fs::write(
        &config,
        format!("[console]\nrevoked = {list:?}\naudit_keep = 0\n"),
    )
    .unwrap();
    let (ok, text) = check();
    assert!(!ok && text.contains("audit_keep"), "{text}");
}
