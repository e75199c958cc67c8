//! Console roles and the audit log, on a real hub over real TLS: a viewer certificate reads
//! everything and is refused every state-changing RPC (the list comes from the proto
//! descriptors and the console's policy, so a new mutating RPC is covered here by itself);
//! an operator's changes and every refused attempt appear in `synapsectl audit` with the
//! caller's identity, address and outcome, and stay there across a hub restart.

mod support;

use std::time::Duration;

use support::{Agent, Hub, Pki, console, run_ok, wait_for};
use synapse_hub::console::policy::{self, Access};
use synapse_proto::console::v1::{
    ListAgentsRequest, RolloutRef, StartRolloutRequest, console_client::ConsoleClient,
    rollouts_client::RolloutsClient,
};
use tonic::Code;

fn audit(hub: &Hub, pki: &Pki, who: &str) -> Vec<serde_json::Value> {
    let output = run_ok(
        hub.ctl(pki, who)
            .args(["audit", "--limit", "1000", "-o", "json"]),
    );
    serde_json::from_slice(&output.stdout).expect("synapsectl audit prints JSON")
}

fn find<'a>(
    entries: &'a [serde_json::Value],
    rpc: &str,
    name: &str,
    outcome: &str,
) -> Option<&'a serde_json::Value> {
    entries.iter().find(|e| {
        e["rpc"].as_str().is_some_and(|r| r.ends_with(rpc))
            && e["name"] == name
            && e["outcome"] == outcome
    })
}

#[test]
fn viewers_read_operators_change_and_the_audit_log_says_who_did_what() {
    let root = tempfile::tempdir().unwrap();
    let pki = Pki::init(root.path().join("pki"));
    pki.issue("hub", "synapse-hub");
    pki.issue("operator", "operator");
    pki.issue("viewer", "watcher");
    pki.issue("agent", "edge-1");
    let mut hub = Hub::start(root.path(), &pki);
    let _agent = Agent::start(root.path(), &pki, &hub, "edge-1", "edge", 100_000, 50);
    wait_for("edge-1 to connect", Duration::from_secs(30), || {
        hub.agents(&pki)
            .iter()
            .any(|a| a["agent_id"] == "edge-1" && a["connected"] == true)
            .then_some(())
    });

    // synapsectl reads with a viewer certificate.
    let listed = run_ok(hub.ctl(&pki, "watcher").args(["agents", "-o", "json"]));
    assert!(String::from_utf8_lossy(&listed.stdout).contains("edge-1"));
    run_ok(hub.ctl(&pki, "watcher").args(["rollouts", "status"]));
    run_ok(hub.ctl(&pki, "watcher").args(["functions"]));
    // ... and is refused a rollout, with a message that says why.
    let refused = hub
        .ctl(&pki, "watcher")
        .args(["rollouts", "abort", "settings"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("PermissionDenied") || stderr.contains("permission"),
        "{stderr}"
    );
    assert!(stderr.contains("viewer"), "{stderr}");

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mutations: Vec<String> = runtime.block_on(async {
        // Every served RPC, as the viewer: reads pass the gate, mutations do not.
        let viewer = console::channel(&hub, &pki, "watcher").await;
        let mut mutations = Vec::new();
        for method in policy::served_methods() {
            let access = policy::classify(&method.path)
                .unwrap_or_else(|| panic!("{} is not classified", method.path));
            let outcome = console::call(viewer.clone(), &method).await;
            match access {
                Access::Mutate(_) => {
                    let status = outcome.expect_err(&method.path);
                    assert_eq!(status.code(), Code::PermissionDenied, "{}", method.path);
                    assert!(
                        status.message().contains("synapse://viewer/watcher")
                            && status.message().contains("operator certificate"),
                        "{}: {}",
                        method.path,
                        status.message()
                    );
                    mutations.push(method.path.clone());
                }
                Access::Read => {
                    if let Err(status) = outcome {
                        assert!(
                            !matches!(
                                status.code(),
                                Code::PermissionDenied | Code::Unauthenticated
                            ),
                            "{} refused to a viewer: {status}",
                            method.path
                        );
                    }
                }
            }
        }

        // An agent's certificate cannot use the console at all.
        let agent = console::channel(&hub, &pki, "edge-1").await;
        let status = ConsoleClient::new(agent)
            .list_agents(ListAgentsRequest {})
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied);
        assert!(status.message().contains("not an operator"), "{status}");

        // The operator changes things: one call that works, one that fails.
        let mut rollouts = RolloutsClient::new(console::channel(&hub, &pki, "operator").await);
        rollouts
            .start(StartRolloutRequest {
                target: "settings".into(),
                version: "v2".into(),
                payload: "[pools]\n".into(),
                steps: vec!["100%".into()],
                bake_ms: 3_600_000,
                reason: "audit check".into(),
                ..Default::default()
            })
            .await
            .expect("an operator starts a rollout");
        let status = rollouts
            .pause(RolloutRef {
                id: "no-such-rollout".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::NotFound);
        mutations
    });
    assert!(
        mutations.len() >= 5,
        "the console serves at least the rollout operations: {mutations:?}"
    );

    let check = |entries: &[serde_json::Value]| {
        let started = find(entries, "Rollouts/Start", "operator", "OK")
            .unwrap_or_else(|| panic!("operator's start is audited: {entries:#?}"));
        assert_eq!(started["role"], "operator");
        assert_eq!(started["refused"], false);
        let summary = started["summary"].as_str().unwrap();
        assert!(
            summary.contains("target=\"settings\"") && summary.contains("version=\"v2\""),
            "{summary}"
        );
        assert!(
            started["peer"].as_str().unwrap().starts_with("127.0.0.1:"),
            "{started}"
        );
        assert!(
            started["time"].as_str().unwrap().ends_with('Z'),
            "{started}"
        );
        let paused = find(entries, "Rollouts/Pause", "operator", "NOT_FOUND")
            .unwrap_or_else(|| panic!("operator's failed pause is audited: {entries:#?}"));
        assert!(
            paused["summary"]
                .as_str()
                .unwrap()
                .contains("no-such-rollout")
        );
        // Each refused mutation of the viewer, and the agent's attempt.
        for path in &mutations {
            let refused = entries
                .iter()
                .find(|e| e["rpc"] == path.as_str() && e["name"] == "watcher")
                .unwrap_or_else(|| panic!("viewer's {path} is audited: {entries:#?}"));
            assert_eq!(refused["outcome"], "PERMISSION_DENIED");
            assert_eq!(refused["refused"], true);
            assert_eq!(refused["role"], "viewer");
        }
        let agent = find(entries, "Console/ListAgents", "edge-1", "PERMISSION_DENIED")
            .expect("agent's attempt is audited");
        assert_eq!(agent["role"], "agent");
        // Reads are not audited.
        assert!(find(entries, "Console/ListAgents", "watcher", "OK").is_none());
    };
    let entries = audit(&hub, &pki, "operator");
    check(&entries);
    // Viewers may read the audit log too.
    assert_eq!(audit(&hub, &pki, "watcher").len(), entries.len());

    // The log is in the hub's store: it survives a restart.
    hub.kill();
    hub.spawn();
    check(&audit(&hub, &pki, "operator"));
}
