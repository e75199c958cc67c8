//! Fleet benchmark (prints figures; not a test). Starts a real `synapse-hub` process and
//! connects simulated agents to it: light in-process QUIC clients with their own certificate,
//! each sending one telemetry batch per second and timing its acknowledgement (which the hub
//! sends only after persisting the batch). Reports, for 1,000 agents, the hub's CPU and RSS
//! (from /proc) and p50/p99 ack latency; then grows the fleet step by step to find the
//! largest one whose p99 ack latency stays under 50 ms with no agent dropped by the hub, within
//! a bounded run time.
//!
//! Run: `cargo bench -p synapse-hub --bench fleet` (optional: `FLEET_START=1000`,
//! `FLEET_STEP=250`, `FLEET_MAX=6000`, `FLEET_MEASURE_S=15`, `FLEET_BUDGET_S=240`). Clients and
//! hub share this machine's cores. With `SYNAPSE_BENCH_SMOKE=1` the defaults are one step of 5
//! agents measured for 2 s (the variables still apply), printing the same lines; nothing about
//! timings is asserted.

use std::{
    net::{SocketAddr, TcpListener, UdpSocket},
    path::Path,
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use synapse_hub::certs::{self, IssueRequest};
use synapse_link::{
    codec::{FrameReader, write_frame},
    identity::Role,
    tls::{self, TlsFiles},
};
use synapse_proto::link::v1::{Frame, FunctionInterval, Hello, TelemetryBatch, Tier, frame::Body};
use tokio_util::sync::CancellationToken;

type Latencies = Arc<Mutex<Option<Vec<f64>>>>;

/// Simulated agents whose connection failed or broke.
static LOST: AtomicUsize = AtomicUsize::new(0);

/// Simulated agents that had their first batch acknowledged.
static ACKED: AtomicUsize = AtomicUsize::new(0);

/// Short runs that still print every figure (`SYNAPSE_BENCH_SMOKE=1`).
fn smoke() -> bool {
    std::env::var("SYNAPSE_BENCH_SMOKE").is_ok_and(|v| v == "1")
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn free_port_udp() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_port_tcp() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The hub process and what /proc says about it.
struct HubProcess {
    child: Child,
}

impl HubProcess {
    fn start(root: &Path, link: u16) -> Self {
        let metrics = free_port_tcp();
        let config = root.join("hub.toml");
        let pki = root.join("pki");
        let text = format!(
            "data_dir = {:?}\n[tls]\nca = {:?}\ncert = {:?}\nkey = {:?}\n[link]\nlisten = \"127.0.0.1:{link}\"\n\
             [console]\nlisten = \"127.0.0.1:{}\"\n[metrics]\nlisten = \"127.0.0.1:{}\"\n",
            root.join("hub-data"),
            pki.join("ca.pem"),
            pki.join("synapse-hub.pem"),
            pki.join("synapse-hub.key"),
            free_port_tcp(),
            metrics,
        );
        std::fs::write(&config, text).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_synapse-hub"))
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdout(std::fs::File::create(root.join("hub.log")).expect("hub log file"))
            .stderr(Stdio::inherit())
            .spawn()
            .expect("synapse-hub starts");
        // Ready once its metrics endpoint accepts connections (it binds the link first).
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", metrics)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child }
    }

    /// User + system CPU time in seconds.
    fn cpu_seconds(&self) -> f64 {
        cpu_seconds_of(&self.child.id().to_string())
    }

    fn rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
            .unwrap_or(0.0)
    }
}

/// User + system CPU time of a process (`self` for this one), in seconds.
fn cpu_seconds_of(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i)?.parse::<f64>().ok())
        .sum();
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks / per_second
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn issue_agents(pki: &Path, from: usize, to: usize) {
    for i in from..to {
        let request = IssueRequest {
            role: Role::Agent,
            name: format!("sim-{i}"),
            dns: vec![],
            ips: vec![],
        };
        certs::issue(pki, pki, &request).expect("agent certificate");
    }
}

fn batch(sequence: u64) -> TelemetryBatch {
    TelemetryBatch {
        sequence,
        intervals: (0..3)
            .map(|f| FunctionInterval {
                function: format!("fn-{f}"),
                interval_ms: 1000,
                invocations: 5,
                cold_starts: 1,
                cold_start_bounds_s: vec![0.05, 0.25, 1.0],
                cold_start_counts: vec![0, 1, 0],
                cold_start_sum_s: 0.1,
                ..Default::default()
            })
            .collect(),
    }
}

/// One simulated agent: hello, then one batch per second, timing each ack.
async fn agent(
    endpoint: quinn::Endpoint,
    config: quinn::ClientConfig,
    hub: SocketAddr,
    id: String,
    latencies: Latencies,
    stop: CancellationToken,
) {
    let run = async {
        let connection = endpoint
            .connect_with(config, hub, "synapse-hub")
            .map_err(|e| format!("connect: {e}"))?
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let (mut send, recv) = connection
            .open_bi()
            .await
            .map_err(|e| format!("stream: {e}"))?;
        let hello = Hello {
            agent_id: id,
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
        .map_err(|e| format!("hello: {e}"))?;
        let mut reader = FrameReader::new(recv, 1 << 20);
        reader.next().await.map_err(|e| format!("welcome: {e:?}"))?;
        let phase = Duration::from_millis(rand::random_range(0..1000));
        let mut tick =
            tokio::time::interval_at(tokio::time::Instant::now() + phase, Duration::from_secs(1));
        for sequence in 1.. {
            tick.tick().await;
            let sent = Instant::now();
            write_frame(
                &mut send,
                &Frame {
                    body: Some(Body::Telemetry(batch(sequence))),
                },
            )
            .await
            .map_err(|e| format!("telemetry: {e}"))?;
            loop {
                let frame = reader.next().await.map_err(|e| format!("ack: {e}"))?;
                if matches!(frame, Some(Frame { body: Some(Body::Ack(ref ack)) }) if ack.sequence == sequence)
                {
                    break;
                }
            }
            let latency = sent.elapsed().as_secs_f64();
            if sequence == 1 {
                ACKED.fetch_add(1, Ordering::Relaxed);
            }
            if let Some(samples) = latencies.lock().unwrap().as_mut() {
                samples.push(latency);
            }
        }
        Ok::<(), String>(())
    };
    tokio::select! {
        _ = stop.cancelled() => {}
        outcome = run => {
            if LOST.fetch_add(1, Ordering::Relaxed) == 0 {
                eprintln!("first simulated agent lost: {outcome:?}");
            }
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

struct Figures {
    agents: usize,
    acks: usize,
    cpu_percent: f64,
    client_cpu_percent: f64,
    rss_mib: f64,
    p50_ms: f64,
    p99_ms: f64,
}

async fn measure(
    hub: &HubProcess,
    latencies: &Latencies,
    agents: usize,
    window: Duration,
) -> Figures {
    *latencies.lock().unwrap() = Some(Vec::new());
    let cpu_before = hub.cpu_seconds();
    let clients_before = cpu_seconds_of("self");
    tokio::time::sleep(window).await;
    let cpu = hub.cpu_seconds() - cpu_before;
    let clients = cpu_seconds_of("self") - clients_before;
    let mut samples = latencies.lock().unwrap().take().unwrap_or_default();
    samples.sort_by(f64::total_cmp);
    Figures {
        agents,
        acks: samples.len(),
        cpu_percent: 100.0 * cpu / window.as_secs_f64(),
        client_cpu_percent: 100.0 * clients / window.as_secs_f64(),
        rss_mib: hub.rss_mib(),
        p50_ms: percentile(&samples, 0.5) * 1e3,
        p99_ms: percentile(&samples, 0.99) * 1e3,
    }
}

fn print(figures: &Figures, window: Duration) {
    println!(
        "{:>6} agents ({} lost)  {:>7.0} acks/s  hub CPU {:>5.1}%  clients CPU {:>5.1}%  hub RSS {:>6.1} MiB  ack p50 {:>6.2} ms  p99 {:>7.2} ms",
        figures.agents,
        LOST.load(Ordering::Relaxed),
        figures.acks as f64 / window.as_secs_f64(),
        figures.cpu_percent,
        figures.client_cpu_percent,
        figures.rss_mib,
        figures.p50_ms,
        figures.p99_ms
    );
}

#[tokio::main]
async fn main() {
    let smoke = smoke();
    let first = env_u64("FLEET_START", if smoke { 5 } else { 1000 }) as usize;
    let step = env_u64("FLEET_STEP", if smoke { 5 } else { 250 }).max(1) as usize;
    let max = env_u64("FLEET_MAX", if smoke { 5 } else { 6000 }) as usize;
    let window = Duration::from_secs(env_u64("FLEET_MEASURE_S", if smoke { 2 } else { 15 }));
    let budget = Duration::from_secs(env_u64("FLEET_BUDGET_S", if smoke { 30 } else { 240 }));
    let started = Instant::now();

    let root = tempfile::tempdir().unwrap();
    let pki = root.path().join("pki");
    certs::init(&pki).unwrap();
    let hub_cert = IssueRequest {
        role: Role::Hub,
        name: "synapse-hub".into(),
        dns: vec![],
        ips: vec![],
    };
    certs::issue(&pki, &pki, &hub_cert).unwrap();
    let link_port = free_port_udp();
    let hub = HubProcess::start(root.path(), link_port);
    let hub_addr: SocketAddr = ([127, 0, 0, 1], link_port).into();
    let endpoints: Vec<quinn::Endpoint> = (0..8)
        .map(|_| quinn::Endpoint::client(([127, 0, 0, 1], 0).into()).unwrap())
        .collect();
    let latencies: Latencies = Arc::new(Mutex::new(None));
    let stop = CancellationToken::new();

    println!(
        "fleet benchmark: 1 batch/s per agent, ack after persist; {} s windows",
        window.as_secs()
    );
    let mut fleet = 0usize;
    let mut target = first;
    let mut largest_ok = None;
    // A fleet in which the hub dropped an agent is not served, whatever the others' latency.
    let mut largest_whole = None;
    while target <= max && started.elapsed() < budget {
        issue_agents(&pki, fleet, target);
        for i in fleet..target {
            let (cert, key, ca) = (
                pki.join(format!("sim-{i}.pem")),
                pki.join(format!("sim-{i}.key")),
                pki.join("ca.pem"),
            );
            let config = tls::client_config(
                &TlsFiles {
                    ca: &ca,
                    cert: &cert,
                    key: &key,
                },
                Duration::from_secs(30),
            )
            .unwrap();
            tokio::spawn(agent(
                endpoints[i % endpoints.len()].clone(),
                config,
                hub_addr,
                format!("sim-{i}"),
                latencies.clone(),
                stop.clone(),
            ));
            if i % 50 == 49 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        fleet = target;
        // Measure once every agent of the fleet is connected and has had its first batch
        // acknowledged (or was lost), or after a minute at most.
        let deadline = Instant::now() + Duration::from_secs(60);
        while ACKED.load(Ordering::Relaxed) + LOST.load(Ordering::Relaxed) < fleet
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let figures = measure(&hub, &latencies, fleet, window).await;
        print(&figures, window);
        if figures.acks == 0 || figures.p99_ms >= 50.0 {
            break;
        }
        largest_ok = Some(fleet);
        if LOST.load(Ordering::Relaxed) == 0 {
            largest_whole = Some(fleet);
        }
        target += step;
    }
    let show = |n: Option<usize>| n.map_or("none".to_string(), |n| format!("{n} agents"));
    match largest_ok {
        Some(_) => println!(
            "largest fleet measured with p99 ack < 50 ms and no agent lost: {} \
             (counting only the agents still connected: {}; steps of {step}, cap {max})",
            show(largest_whole),
            show(largest_ok)
        ),
        None => println!("no measured fleet kept p99 ack < 50 ms"),
    }
    stop.cancel();
    let log = std::fs::read_to_string(root.path().join("hub.log")).unwrap_or_default();
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains("WARN")).collect();
    println!("hub warnings: {}", warnings.len());
    for line in warnings.iter().take(3) {
        println!("  {line}");
    }
}
