//! The hub refuses what it must and keeps serving everyone else: on the link, a client
//! without a certificate, one with a certificate from another CA, and connections sending a
//! malformed or an oversized frame; on the console, no certificate, another CA's operator
//! certificate and an agent's certificate. Meanwhile three agents keep reporting and finish
//! with every batch acknowledged. The console's health and reflection services answer an
//! operator.

mod support;

use std::{net::SocketAddr, path::Path, time::Duration};

use support::{Agent, Hub, Pki, wait_for};
use synapse_link::{
    codec::{FrameReader, write_frame},
    tls::{self, TlsFiles},
};
use synapse_proto::link::v1::{Frame, Hello, Tier, frame::Body};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

const BATCHES: u64 = 300;

fn client(ca: &Path, cert: &Path, key: &Path) -> quinn::ClientConfig {
    tls::client_config(&TlsFiles { ca, cert, key }, Duration::from_secs(5)).unwrap()
}

/// Connects, says hello as `agent_id`, and returns the connection and its stream once
/// welcomed.
async fn welcomed(
    config: quinn::ClientConfig,
    hub: SocketAddr,
    agent_id: &str,
) -> Result<(quinn::Connection, quinn::SendStream), String> {
    let hello = Hello {
        agent_id: agent_id.into(),
        tier: Tier::Edge as i32,
        link_versions: vec![1],
        ..Default::default()
    };
    welcomed_with(config, hub, hello).await
}

/// Connects and says `hello`; the hub's answer if it is not a welcome.
async fn welcomed_with(
    config: quinn::ClientConfig,
    hub: SocketAddr,
    hello: Hello,
) -> Result<(quinn::Connection, quinn::SendStream), String> {
    let mut endpoint =
        quinn::Endpoint::client(([127, 0, 0, 1], 0).into()).map_err(|e| e.to_string())?;
    endpoint.set_default_client_config(config);
    let attempt = async {
        let connection = endpoint
            .connect(hub, "synapse-hub")
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let (mut send, recv) = connection
            .open_bi()
            .await
            .map_err(|e| format!("stream: {e}"))?;
        write_frame(
            &mut send,
            &Frame {
                body: Some(Body::Hello(hello)),
            },
        )
        .await
        .map_err(|e| format!("hello: {e}"))?;
        let mut reader = FrameReader::new(recv, 1 << 20);
        match reader.next().await {
            Ok(Some(Frame {
                body: Some(Body::Welcome(_)),
            })) => Ok((connection, send)),
            other => Err(format!("not welcomed: {other:?}")),
        }
    };
    tokio::time::timeout(Duration::from_secs(10), attempt)
        .await
        .unwrap_or_else(|_| Err("timed out".into()))
}

/// Sends `bytes` raw on a new connection of a welcomed agent and returns the reason the hub
/// closed the connection with.
async fn close_reason_after_sending(
    config: quinn::ClientConfig,
    hub: SocketAddr,
    agent_id: &str,
    bytes: &[u8],
) -> String {
    let mut endpoint = quinn::Endpoint::client(([127, 0, 0, 1], 0).into()).unwrap();
    endpoint.set_default_client_config(config);
    let connection = endpoint.connect(hub, "synapse-hub").unwrap().await.unwrap();
    let (mut send, recv) = connection.open_bi().await.unwrap();
    let hello = Hello {
        agent_id: agent_id.into(),
        tier: Tier::Edge as i32,
        link_versions: vec![1],
        ..Default::default()
    };
    write_frame(
        &mut send,
        &Frame {
            body: Some(Body::Hello(hello)),
        },
    )
    .await
    .unwrap();
    let mut reader = FrameReader::new(recv, 1 << 20);
    let welcome = reader.next().await.unwrap();
    assert!(
        matches!(
            welcome,
            Some(Frame {
                body: Some(Body::Welcome(_))
            })
        ),
        "{welcome:?}"
    );
    send.write_all(bytes).await.unwrap();
    let error = reader.next().await;
    let closed = tokio::time::timeout(Duration::from_secs(10), connection.closed())
        .await
        .unwrap();
    match closed {
        quinn::ConnectionError::ApplicationClosed(close) => {
            if let Ok(Some(Frame {
                body: Some(Body::Error(e)),
            })) = &error
            {
                assert_eq!(
                    e.code.as_bytes(),
                    &close.reason[..],
                    "error frame and close agree"
                );
            }
            String::from_utf8_lossy(&close.reason).into_owned()
        }
        other => format!("{other}"),
    }
}

async fn console_channel(
    hub: &Hub,
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<Channel, String> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(ca).unwrap()))
        .domain_name("synapse-hub");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(
            std::fs::read(cert).unwrap(),
            std::fs::read(key).unwrap(),
        ));
    }
    Channel::from_shared(hub.console.clone())
        .unwrap()
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| e.to_string())
}

#[test]
fn refused_clients_and_frames_do_not_disturb_the_fleet() {
    let root = tempfile::tempdir().unwrap();
    let pki = Pki::init(root.path().join("pki"));
    pki.issue("hub", "synapse-hub");
    pki.issue("operator", "operator");
    pki.issue("agent", "rogue-1");
    let other = Pki::init(root.path().join("other-pki"));
    other.issue("agent", "edge-1");
    other.issue("operator", "operator");
    other.issue("hub", "synapse-hub");
    let fleet = [
        ("edge-1", "edge"),
        ("regional-1", "regional"),
        ("cloud-1", "cloud"),
    ];
    for (id, _) in fleet {
        pki.issue("agent", id);
    }
    let hub = Hub::start(root.path(), &pki);
    let mut agents: Vec<Agent> = fleet
        .iter()
        .map(|(id, tier)| Agent::start(root.path(), &pki, &hub, id, tier, BATCHES, 20))
        .collect();
    wait_for("the fleet to report", Duration::from_secs(60), || {
        (hub.metric("synapse_hub_batches_accepted_total") >= 30.0).then_some(())
    });

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let link: SocketAddr = hub.link.parse().unwrap();
    runtime.block_on(async {
        // Link: no certificate.
        let anonymous = tls::anonymous_client_config(&pki.ca(), Duration::from_secs(5)).unwrap();
        let refused = welcomed(anonymous, link, "edge-1").await;
        assert!(
            refused.is_err(),
            "a client without certificate was welcomed"
        );

        // Link: a certificate from another CA, even with a fleet agent's name.
        let foreign = client(&pki.ca(), &other.cert("edge-1"), &other.key("edge-1"));
        let refused = welcomed(foreign, link, "edge-1").await;
        assert!(
            refused.is_err(),
            "a certificate from another CA was welcomed"
        );

        // Link: an agent trusts only its hub's CA.
        let wrong_trust = client(&other.ca(), &pki.cert("rogue-1"), &pki.key("rogue-1"));
        let refused = welcomed(wrong_trust, link, "rogue-1").await;
        assert!(refused.is_err(), "an agent accepted a hub outside its CA");

        // Link: a hello that does not match the certificate.
        let (rogue_cert, rogue_key) = (pki.cert("rogue-1"), pki.key("rogue-1"));
        let rogue = || client(&pki.ca(), &rogue_cert, &rogue_key);
        let refused = welcomed(rogue(), link, "cloud-1").await;
        assert!(
            refused.is_err(),
            "an agent was welcomed under another agent's id"
        );

        // Link: a genuine agent whose hello carries labels that would forge console lines.
        let forged = Hello {
            agent_id: "rogue-1".into(),
            tier: Tier::Edge as i32,
            link_versions: vec![1],
            labels: [("zone".to_string(), "a\nedge-1 connected".to_string())].into(),
            ..Default::default()
        };
        let refused = welcomed_with(rogue(), link, forged).await;
        let why = refused.expect_err("a hello with a control character was welcomed");
        assert!(why.contains("malformed") && why.contains("label"), "{why}");

        // A genuine certificate is welcomed: the refusals above are about the certificate.
        let accepted = welcomed(rogue(), link, "rogue-1").await;
        let (connection, _stream) = accepted.expect("a genuine agent certificate is welcomed");
        connection.close(0u32.into(), b"done");

        // Link: malformed and oversized frames close that connection only.
        let garbage = [0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0x0f];
        let reason = close_reason_after_sending(rogue(), link, "rogue-1", &garbage).await;
        assert_eq!(reason, "malformed");
        let huge = (10u32 << 20).to_be_bytes();
        let reason = close_reason_after_sending(rogue(), link, "rogue-1", &huge).await;
        assert_eq!(reason, "oversized");

        // Console: no certificate.
        let anonymous = match console_channel(&hub, &pki.ca(), None).await {
            Ok(channel) => synapse_proto::console::v1::console_client::ConsoleClient::new(channel)
                .list_agents(synapse_proto::console::v1::ListAgentsRequest {})
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        assert!(
            anonymous.is_err(),
            "the console answered a client without certificate"
        );

        // Console: health and reflection answer an operator.
        let channel = console_channel(
            &hub,
            &pki.ca(),
            Some((&pki.cert("operator"), &pki.key("operator"))),
        )
        .await
        .unwrap();
        let health = tonic_health::pb::health_client::HealthClient::new(channel.clone())
            .check(tonic_health::pb::HealthCheckRequest {
                service: "synapse.console.v1.Console".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            health.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        );
        let services = list_services(channel).await;
        assert!(
            services.iter().any(|s| s == "synapse.console.v1.Console"),
            "{services:?}"
        );
        assert!(
            services.iter().any(|s| s == "grpc.health.v1.Health"),
            "{services:?}"
        );
    });

    // Console: another CA's operator certificate, and an agent's certificate.
    let foreign = std::process::Command::new(support::CTL)
        .args(["--hub", &hub.console, "--ca"])
        .arg(pki.ca())
        .arg("--cert")
        .arg(other.cert("operator"))
        .arg("--key")
        .arg(other.key("operator"))
        .arg("agents")
        .output()
        .unwrap();
    assert!(
        !foreign.status.success(),
        "the console answered another CA's operator"
    );
    let as_agent = hub.ctl(&pki, "edge-1").arg("agents").output().unwrap();
    assert!(
        !as_agent.status.success(),
        "the console answered an agent certificate"
    );
    assert!(String::from_utf8_lossy(&as_agent.stderr).contains("not an operator"));

    for agent in &mut agents {
        let counters = agent.finish();
        assert_eq!(counters["pushed"], BATCHES, "{}: {counters}", agent.id);
        assert_eq!(counters["pending"], 0, "{}: {counters}", agent.id);
    }
    let listed = hub.agents(&pki);
    for (id, tier) in fleet {
        let agent = listed.iter().find(|a| a["agent_id"] == id).unwrap();
        assert_eq!(
            (agent["tier"].as_str(), agent["batches_accepted"].as_u64()),
            (Some(tier), Some(BATCHES))
        );
    }
    assert!(
        listed
            .iter()
            .all(|a| a["agent_id"] != "cloud-1" || a["tier"] == "cloud")
    );
    // The forged hello and the garbage frame.
    assert_eq!(
        hub.metric("synapse_hub_frames_refused_total{reason=\"malformed\"}"),
        2.0
    );
    assert_eq!(
        hub.metric("synapse_hub_frames_refused_total{reason=\"oversized\"}"),
        1.0
    );
    assert_eq!(
        hub.metric("synapse_hub_frames_refused_total{reason=\"identity\"}"),
        1.0
    );
    assert!(hub.metric("synapse_hub_connections_refused_total{reason=\"tls\"}") >= 2.0);
}

async fn list_services(channel: Channel) -> Vec<String> {
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::once(request))
        .await
        .unwrap()
        .into_inner();
    let response = responses
        .message()
        .await
        .unwrap()
        .expect("one reflection answer");
    match response.message_response {
        Some(MessageResponse::ListServicesResponse(list)) => {
            list.service.into_iter().map(|s| s.name).collect()
        }
        other => panic!("unexpected reflection answer {other:?}"),
    }
}
