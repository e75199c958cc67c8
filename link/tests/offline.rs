//! With no hub reachable, the link never blocks its caller: every batch handed to it is
//! persisted, the bounded outbox drops the oldest and counts them, the status says the link
//! is down and why, and the outbox survives a restart of the link.

use std::time::Duration;

use synapse_link::{
    client::{self, AgentIdentity, LinkConfig, LinkStatus},
    outbox::Outbox,
};
use synapse_proto::link::v1::{FunctionInterval, Tier};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

fn interval(i: u64) -> Vec<FunctionInterval> {
    vec![FunctionInterval {
        function: format!("f{i}"),
        invocations: i,
        ..Default::default()
    }]
}

#[tokio::test]
async fn without_a_hub_batches_are_kept_up_to_the_bound_and_drops_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["agent".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (cert_path, key_path) = (dir.path().join("agent.pem"), dir.path().join("agent.key"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    // A port nobody listens on: every connection attempt fails.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = LinkConfig {
        hub: format!("127.0.0.1:{port}"),
        ca: cert_path.clone(),
        cert: cert_path,
        key: key_path,
        outbox_max_batches: 10,
        connect_timeout: Duration::from_millis(300),
        reconnect_initial: Duration::from_millis(20),
        reconnect_max: Duration::from_millis(100),
        ..LinkConfig::default()
    };
    let identity = AgentIdentity {
        id: "agent".into(),
        tier: Tier::Edge,
        labels: Default::default(),
        version: "test".into(),
        capacity: client::host_capacity(),
        gateway: String::new(),
    };
    let db = synapse_db::open(&dir.path().join("db")).unwrap();
    let (batches, rx) = mpsc::channel(64);
    let (status_tx, mut status) = watch::channel(LinkStatus::default());
    let shutdown = CancellationToken::new();
    let link = tokio::spawn(client::run_reporting(
        config,
        identity,
        db.clone(),
        rx,
        shutdown.clone(),
        status_tx,
    ));

    for i in 0..25 {
        batches
            .try_send(interval(i))
            .expect("the link never makes its caller wait");
    }
    let settled = tokio::time::timeout(
        Duration::from_secs(30),
        status.wait_for(|s| s.outbox.pushed == 25 && s.last_error.is_some()),
    )
    .await
    .expect("batches persisted and a failed attempt reported")
    .unwrap()
    .clone();
    assert!(!settled.connected);
    assert_eq!((settled.outbox.pending, settled.outbox.dropped), (10, 15));
    shutdown.cancel();
    link.await.unwrap().unwrap();

    let outbox = Outbox::open(&db, 10).unwrap();
    let kept: Vec<u64> = outbox
        .pending_after(0, 100)
        .unwrap()
        .iter()
        .map(|b| b.intervals[0].invocations)
        .collect();
    assert_eq!(
        kept,
        (15..25).collect::<Vec<_>>(),
        "the newest ten batches are kept"
    );
}
