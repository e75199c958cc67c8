//! Who may use the gateway, against a real agent, real TLS and a fresh PKI made by
//! `synapsectl certs` for each test: the peer listener, where other agents forward
//! invocations, takes fleet agent certificates only (not an operator's, not one of another
//! CA, not none, not plain HTTP); the forwarding side goes on only to the agent placement
//! named; bearer tokens guard the functions listed in `[gateway.tokens]` (401, 403, 200) on
//! both of the public listener's paths and on the peer listener; `check-config` and
//! `hash-token` check and make what the configuration holds. The agents run as root. One
//! file over 400 lines: its four tests share the PKI, the agent and the TLS clients (one that
//! takes any server, to show the server's refusals) defined here.

mod common;

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::Arc,
    time::Duration,
};

use common::*;
use rustls::{
    DigitallySignedStruct, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    pki_types::{CertificateDer, ServerName, UnixTime},
};
use synapse_agent::gateway::{
    auth::hash_token,
    forward::fields_of,
    peer::{PeerClient, PeerTls},
    remote::{Remote, Route, Target},
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const TOKEN: &str = "test-token-0123456789abcdef";

fn bin(name: &str) -> PathBuf {
    Path::new(AGENT).with_file_name(name)
}

/// A CA in `dir` with certificates for `agents` and an operator `ops`.
fn certs(dir: &Path, agents: &[&str]) {
    let dir = dir.to_str().unwrap();
    let run = |args: &[&str]| {
        let s = Command::new(bin("synapsectl"))
            .args(args)
            .stdout(Stdio::null())
            .status()
            .expect("synapsectl (built with the hub)");
        assert!(s.success(), "synapsectl {args:?}");
    };
    run(&["certs", "init", dir]);
    run(&[
        "certs", "issue", "--ca-dir", dir, "--role", "operator", "--name", "ops",
    ]);
    for a in agents {
        run(&[
            "certs", "issue", "--ca-dir", dir, "--role", "agent", "--name", a,
        ]);
    }
}

/// The fleet's PKI and another CA's, as the tests use them.
struct Pki {
    _dir: tempfile::TempDir,
    fleet: PathBuf,
    foreign: PathBuf,
}

impl Pki {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (fleet, foreign) = (dir.path().join("fleet"), dir.path().join("foreign"));
        certs(&fleet, &["edge-1", "cloud-1"]);
        certs(&foreign, &["edge-1", "cloud-1"]);
        Self {
            _dir: dir,
            fleet,
            foreign,
        }
    }

    /// The peer link's TLS with `name`'s certificate from `ca_dir`, trusting the fleet CA.
    fn tls(&self, ca_dir: &Path, name: &str) -> PeerTls {
        PeerTls::load(
            &self.fleet.join("ca.pem"),
            &ca_dir.join(format!("{name}.pem")),
            &ca_dir.join(format!("{name}.key")),
        )
        .unwrap()
    }
}

/// Agent `cloud-1` with a `[link]` (to a hub that is not there: the link keeps retrying),
/// its peer listener on a free port, `open` and `locked` (which takes [`TOKEN`]). Returns it
/// with its peer listener's port.
fn start_agent(pki: &Pki, name: &str) -> (Agent, u16, tempfile::TempDir) {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let fleet = pki.fleet.display();
    let settings = format!(
        "peer_listen = \"127.0.0.1:0\"\n\n[gateway.tokens]\nlocked = [\"{}\"]\n",
        hash_token(TOKEN)
    );
    let config = format!(
        "[link]\nhub = \"127.0.0.1:{hub}\"\nca = \"{fleet}/ca.pem\"\ncert = \"{fleet}/cloud-1.pem\"\n\
         key = \"{fleet}/cloud-1.key\"\n\n\
         [[functions]]\nname = \"open\"\ncommand = \"{SAMPLE_FN}\"\n\n\
         [[functions]]\nname = \"locked\"\ncommand = \"{SAMPLE_FN}\"\n",
        hub = free_ports(1),
    );
    let subtree = format!("synapse-test-auth-{name}-{}", std::process::id());
    let agent = Agent::start_with_gateway(
        dir.path(),
        free_ports(1),
        &subtree,
        "cloud-1",
        "cloud",
        &settings,
        &config,
    );
    agent.wait_until("the peer listener", |a| peer_port(&a.log()).is_some());
    let peer = peer_port(&agent.log()).unwrap();
    (agent, peer, dir)
}

/// The port the peer listener was bound on, as the agent logs it (`listen=IP:PORT`, perhaps
/// with terminal colours around the field's name).
fn peer_port(log: &str) -> Option<u16> {
    let line = log
        .lines()
        .find(|l| l.contains("peer listener (mutual TLS"))?;
    let mut plain = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|c| c.is_ascii_alphabetic());
        } else {
            plain.push(c);
        }
    }
    let (_, after) = plain.split_once(" listen=")?;
    let addr = after.split_whitespace().next()?;
    addr.parse::<SocketAddr>().ok().map(|a| a.port())
}

/// A server certificate verifier that takes anything: the client of a test that the server
/// must refuse.
#[derive(Debug)]
struct TakeAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for TakeAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A TLS client that presents no certificate.
fn anonymous() -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(TakeAny(provider)))
        .with_no_client_auth();
    Arc::new(config)
}

/// `request` over TLS with `config` to the peer listener on `port`: the answer, or why there
/// was none.
async fn over_tls(
    config: Arc<rustls::ClientConfig>,
    port: u16,
    request: &str,
) -> Result<Reply, String> {
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let mut tls = tokio_rustls::TlsConnector::from(config)
            .connect(ServerName::IpAddress(Ipv4Addr::LOCALHOST.into()), tcp)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        // In TLS 1.3 the server judges the client's certificate after the client's side of the
        // handshake is over: a refusal shows as the request going unanswered.
        tls.write_all(request.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        tls.flush().await.map_err(|e| format!("flush: {e}"))?;
        let mut out = Vec::new();
        let read = tls.read_to_end(&mut out).await;
        let text = String::from_utf8_lossy(&out).into_owned();
        if text.starts_with("HTTP/1.1 ") {
            Ok(Reply::parse(&text))
        } else {
            Err(format!("no answer ({read:?}): {text:?}"))
        }
    };
    tokio::time::timeout(Duration::from_secs(20), exchange)
        .await
        .unwrap_or_else(|_| Err("no answer within 20 s".into()))
}

/// A POST to `function` with `extra` header lines (each ending in CRLF), 2 bytes of body.
fn post(function: &str, extra: &str) -> String {
    format!(
        "POST /v1/functions/{function}/invoke HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}Content-Length: 2\r\n\r\nhi"
    )
}

/// The same POST over plain TCP to the public listener.
fn plain(port: u16, request: &str) -> Reply {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    Reply::parse(&String::from_utf8_lossy(&out))
}

const LIST: &str = "GET /v1/functions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peer_listener_takes_fleet_agent_certificates_only() {
    let pki = Pki::new();
    let (agent, peer, _dir) = start_agent(&pki, "peer");
    let edge = pki.tls(&pki.fleet, "edge-1").client;

    // A fleet agent: the listing, and an invocation served here.
    let listed = over_tls(edge.clone(), peer, LIST).await.unwrap();
    assert_eq!(listed.status, 200, "{listed:?}");
    assert!(listed.body.contains("\"open\""), "{listed:?}");
    let served = over_tls(edge.clone(), peer, &post("open", ""))
        .await
        .unwrap();
    assert_eq!(served.status, 200, "{served:?}");
    assert!(served.header("x-synapse-start").is_some(), "{served:?}");

    // An operator of the same fleet, an agent of another CA, no certificate: refused.
    for (who, config) in [
        ("operator", pki.tls(&pki.fleet, "ops").client),
        ("foreign agent", pki.tls(&pki.foreign, "edge-1").client),
        ("no certificate", anonymous()),
    ] {
        let answer = over_tls(config, peer, LIST).await;
        assert!(answer.is_err(), "{who} was answered: {answer:?}");
    }
    // Plain HTTP is no way in either.
    let answer = plain(peer, LIST);
    assert_eq!(answer.status, 0, "plain HTTP was answered: {answer:?}");
    agent.wait_until("the refusals logged", |a| {
        a.log().matches("peer connection refused").count() >= 3
    });
    assert!(agent.stop());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_goes_only_to_the_agent_placement_named() {
    let pki = Pki::new();
    let (agent, peer, _dir) = start_agent(&pki, "forward");
    // The forwarding side, as edge-1's gateway has it.
    let remote = Remote::new(
        Some(PeerClient::new(&pki.tls(&pki.fleet, "edge-1"))),
        ["open"].into_iter(),
    );
    let route = |agent: &str, gateway: SocketAddr| Route::Forward {
        local: 0.0,
        targets: vec![Target {
            agent: agent.into(),
            gateway: gateway.to_string(),
            weight: 1.0,
        }],
    };
    let forward = || async {
        let headers = hyper::HeaderMap::new();
        let fields = fields_of(&headers);
        remote
            .invoke_fields(
                "open",
                &hyper::Method::POST,
                None,
                &fields,
                b"hi",
                Duration::from_secs(10),
            )
            .await
    };
    let at = SocketAddr::from(([127, 0, 0, 1], peer));

    remote.set_route("open", route("cloud-1", at));
    let answer = forward().await.expect("forwarded to cloud-1");
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["x-synapse-forwarded-to"], "cloud-1");
    assert_eq!(remote.forwarded("open"), 1);

    // The plan names another agent than the one answering there: not forwarded.
    remote.set_route("open", route("cloud-9", at));
    assert!(forward().await.is_none(), "forwarded to an agent not named");

    // Targets presenting an agent certificate of another CA, or an operator's of the fleet.
    for (ca, name, who) in [
        (&pki.foreign, "cloud-1", "foreign agent"),
        (&pki.fleet, "ops", "operator"),
    ] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fake = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(pki.tls(ca, name).server);
        let serving = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            // The handshake fails: the forwarding side refuses this certificate.
            acceptor.accept(tcp).await.is_ok()
        });
        remote.set_route("open", route(name, fake));
        assert!(forward().await.is_none(), "forwarded to a {who}");
        assert!(!serving.await.unwrap(), "a {who} completed a handshake");
    }
    assert_eq!(remote.forwarded("open"), 1);
    assert_eq!(remote.arrivals("open"), 4);
    assert!(agent.stop());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_tokens_guard_the_functions_listed() {
    let pki = Pki::new();
    let (agent, peer, _dir) = start_agent(&pki, "tokens");
    let gateway = agent.gateway;
    let right = format!("Authorization: Bearer {TOKEN}\r\n");
    let wrong = "Authorization: Bearer not-the-token-0123456789\r\n";
    // The fast path (a Content-Length body) and hyper's (a chunked one).
    let chunked = |extra: &str| {
        format!(
            "POST /v1/functions/locked/invoke HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}Transfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"
        )
    };
    for (path, request) in [
        ("fast", post("locked", "")),
        ("hyper", chunked("")),
        (
            "basic",
            post("locked", "Authorization: Basic dXNlcjpwYXNz\r\n"),
        ),
    ] {
        let r = plain(gateway, &request);
        assert_eq!(r.status, 401, "{path}: {r:?}");
        assert!(
            r.header("www-authenticate")
                .is_some_and(|v| v.starts_with("Bearer")),
            "{path}: {r:?}"
        );
    }
    for (path, request) in [("fast", post("locked", wrong)), ("hyper", chunked(wrong))] {
        let r = plain(gateway, &request);
        assert_eq!(r.status, 403, "{path}: {r:?}");
        assert!(r.header("www-authenticate").is_none(), "{path}: {r:?}");
    }
    for (path, request) in [("fast", post("locked", &right)), ("hyper", chunked(&right))] {
        let r = plain(gateway, &request);
        assert_eq!(r.status, 200, "{path}: {r:?}");
    }
    // Functions not listed stay open.
    assert_eq!(plain(gateway, &post("open", "")).status, 200);
    // The peer listener checks the same tokens (the client's header comes along).
    let edge = pki.tls(&pki.fleet, "edge-1").client;
    let r = over_tls(edge.clone(), peer, &post("locked", ""))
        .await
        .unwrap();
    assert_eq!(r.status, 401, "{r:?}");
    let r = over_tls(edge, peer, &post("locked", &right)).await.unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        agent.metric("synapse_gateway_responses_total{function=\"locked\",code=\"401\"}"),
        Some(4.0)
    );
    assert!(agent.stop());
}

/// `synapse-agent check-config FILE` with `text` in FILE: its success and what it said.
fn check_config(text: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agent.toml");
    std::fs::write(&file, text).unwrap();
    let out = Command::new(AGENT)
        .arg("check-config")
        .arg(&file)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_config_checks_the_new_keys_and_hash_token_makes_their_digests() {
    let function = "[[functions]]\nname = \"api\"\ncommand = \"/bin/true\"\n";
    let link = "[link]\nhub = \"127.0.0.1:7443\"\n";
    let ok = |text: &str| {
        let (ok, said) = check_config(text);
        assert!(ok, "refused: {said}\n{text}");
    };
    let refused = |text: &str, field: &str| {
        let (ok, said) = check_config(text);
        assert!(!ok && said.contains(field), "{said}\n{text}");
    };
    let digest = hash_token(TOKEN);
    ok(&format!(
        "[gateway]\npeer_listen = \"0.0.0.0:9443\"\n[gateway.tokens]\napi = [\"{digest}\"]\n{link}{function}"
    ));
    refused(
        &format!("[gateway]\npeer_listen = \"0.0.0.0:9443\"\n{function}"),
        "gateway.peer_listen",
    );
    ok(&format!(
        "[gateway]\npeer_listen = \"0.0.0.0:0\"\n{link}{function}"
    ));
    refused(
        &format!(
            "[gateway]\nlisten = \"0.0.0.0:9443\"\npeer_listen = \"127.0.0.1:9443\"\n{link}{function}"
        ),
        "gateway.peer_listen",
    );
    refused(
        &format!("[gateway.tokens]\napi = [\"{}\"]\n{function}", &digest[1..]),
        "gateway.tokens.api",
    );
    refused(
        &format!("[gateway.tokens]\nother = [\"{digest}\"]\n{function}"),
        "gateway.tokens.other",
    );

    // `hash-token` prints the digest `sha256sum` would; `--generate` a token and its digest.
    let hash = |input: &str, args: &[&str]| {
        let mut child = Command::new(AGENT)
            .arg("hash-token")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (ok_, printed) = hash(&format!("{TOKEN}\n"), &[]);
    assert!(ok_);
    assert_eq!(printed.trim(), digest);
    assert!(!hash("short\n", &[]).0, "a short token is refused");
    assert!(!hash("has space in it 0123456789\n", &[]).0);
    let (ok_, printed) = hash("", &["--generate"]);
    let lines: Vec<&str> = printed.lines().collect();
    assert!(ok_ && lines.len() == 2, "{printed}");
    assert_eq!(lines[1], hash_token(lines[0]));
}
