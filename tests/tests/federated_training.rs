//! Federated training end to end: a hub (in-process, on a real QUIC endpoint with mutual TLS
//! and a real sled store) and four agents' learners (the agent's own `learning` module over
//! real link clients), each replaying a different slice of the functions of the Azure 2019
//! trace with a virtual clock that moves 20 minutes per round. The fleet's training loss falls
//! over the rounds, and the trained model forecasts functions none of the agents saw better
//! than the initial model did.

use std::{collections::BTreeMap, path::Path, sync::Arc, time::Duration};

use synapse_agent::{
    control::ControlBus,
    forecast::neural::{self, ModelHandle, ServingModel, mlp::MlpModel},
    learning::{KINDS, Learner, ReplayedMinutes, samples},
    trace::{FunctionTrace, load_azure2019},
};
use synapse_hub::{
    certs::{self, IssueRequest},
    federation::{
        Federation, FederationConfig, aggregate::Aggregator, optimizer::OptimizerKind,
        rollout::AllAgents, rounds::RoundState,
    },
    link::{self as hub_link, LinkContext},
    metrics::HubMetrics,
    registry::{Durability, Registry},
};
use synapse_link::{
    client::{AgentIdentity, LinkConfig, run_with_control},
    identity::Role,
    tls::{self, TlsFiles},
};
use synapse_proto::link::v1::{Capacity, Tier};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

const TRACE: &str = "/work/shared/traces/azure2019-500fn-8h";
const AGENTS: usize = 4;
const FUNCTIONS_PER_AGENT: usize = 50;
const MINUTES_PER_ROUND: usize = 20;
const WINDOW: usize = 60;
const ROUNDS: u64 = 18;

fn issue(pki: &Path, role: Role, name: &str) {
    certs::issue(
        pki,
        pki,
        &IssueRequest {
            role,
            name: name.into(),
            dns: vec![],
            ips: vec![],
        },
    )
    .expect("certificate issued");
}

/// Every pair of `functions` over the whole trace: the evaluation set.
fn all_pairs(functions: &[FunctionTrace], first_minute: u32) -> Vec<samples::Pair> {
    functions
        .iter()
        .filter(|f| f.invocations() > 0)
        .flat_map(|f| {
            let counts: Vec<f64> = f.counts.iter().map(|&c| f64::from(c)).collect();
            samples::pairs_of(&counts, first_minute, samples::HISTORY..counts.len())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_agents_train_a_model_that_forecasts_unseen_functions_better() {
    let started = std::time::Instant::now();
    let trace = load_azure2019(Path::new(TRACE)).expect("the shared trace loads");
    eprintln!("trace loaded after {:?}", started.elapsed());
    assert!(trace.functions.len() >= AGENTS * FUNCTIONS_PER_AGENT + 100);
    let root = tempfile::tempdir().unwrap();
    let pki = root.path().join("pki");
    std::fs::create_dir_all(&pki).unwrap();
    certs::init(&pki).unwrap();
    issue(&pki, Role::Hub, "synapse-hub");

    let (initial, initial_bytes) = neural::default_model().unwrap();
    eprintln!("initial model after {:?}", started.elapsed());
    let initial_path = root.path().join("initial.onnx");
    std::fs::write(&initial_path, &initial_bytes).unwrap();

    // The hub.
    let db = synapse_db::open(&root.path().join("hub")).unwrap();
    let registry = Registry::open(&db, Duration::from_secs(5)).unwrap();
    let server = tls::server_config(
        &TlsFiles {
            ca: &pki.join("ca.pem"),
            cert: &pki.join("synapse-hub.pem"),
            key: &pki.join("synapse-hub.key"),
        },
        Duration::from_secs(30),
    )
    .unwrap();
    let endpoint = quinn::Endpoint::server(server, "127.0.0.1:0".parse().unwrap()).unwrap();
    let hub_addr = endpoint.local_addr().unwrap();
    let context = LinkContext::new(
        "test-hub".into(),
        registry,
        Durability::start(db.clone()),
        HubMetrics::new(),
        1 << 20,
        Duration::from_secs(5),
    );
    let config = FederationConfig {
        initial_model: Some(initial_path),
        round_interval: Duration::from_millis(300),
        round_timeout: Duration::from_secs(20),
        min_clients: AGENTS,
        aggregator: Aggregator::Mean,
        optimizer: OptimizerKind::Adam,
        learning_rate: 0.001,
        // Small chunks, so every version crosses the link in several frames.
        chunk_bytes: 1024,
        ..FederationConfig::default()
    };
    let federation =
        Federation::open(&db, config, context.outlet(), Box::new(AllAgents), 1 << 20).unwrap();
    let context = Arc::new(context.with_handler(federation.clone()));
    let shutdown = CancellationToken::new();
    let link_task = tokio::spawn(hub_link::serve(endpoint, context, shutdown.clone()));
    let rounds_task = tokio::spawn(federation.clone().run(shutdown.clone()));

    // Four agents, each with its own functions, its own learner, its own link.
    let mut handles = Vec::new();
    let mut agent_tasks = Vec::new();
    for i in 0..AGENTS {
        let name = format!("edge-{i}");
        issue(&pki, Role::Agent, &name);
        let slice = &trace.functions[i * FUNCTIONS_PER_AGENT..(i + 1) * FUNCTIONS_PER_AGENT];
        let data = ReplayedMinutes::new(
            slice,
            trace.first_minute,
            samples::HISTORY,
            MINUTES_PER_ROUND,
            WINDOW,
            20_000,
        );
        let model = ModelHandle::new(ServingModel::load(0, &initial_bytes).unwrap());
        handles.push(model.clone());
        let mut bus = ControlBus::default();
        let frames = bus.subscribe(KINDS);
        let learner = Learner::new(model, data, bus.to_hub());
        agent_tasks.push(tokio::spawn(learner.run(frames, shutdown.clone())));
        let (channels, dispatch) = bus.into_link();
        agent_tasks.push(tokio::spawn(dispatch));
        let link = LinkConfig {
            hub: hub_addr.to_string(),
            ca: pki.join("ca.pem"),
            cert: pki.join(format!("{name}.pem")),
            key: pki.join(format!("{name}.key")),
            heartbeat_interval: Duration::from_millis(500),
            ..LinkConfig::default()
        };
        let identity = AgentIdentity {
            id: name.clone(),
            tier: Tier::Edge,
            labels: BTreeMap::new(),
            version: "test".into(),
            capacity: Capacity::default(),
            gateway: String::new(),
        };
        let outbox = synapse_db::open(&root.path().join(&name)).unwrap();
        let (_batches_tx, batches) = mpsc::channel(1);
        let status = watch::channel(Default::default()).0;
        let stop = shutdown.clone();
        agent_tasks.push(tokio::spawn(async move {
            let _keep_open = _batches_tx;
            let _ = run_with_control(link, identity, outbox, batches, channels, stop, status).await;
        }));
    }

    // Rounds run until ROUNDS have closed, each on data 20 replayed minutes later.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(50);
    let closed = loop {
        let rounds = federation.rounds().recent(100).unwrap();
        let closed: Vec<_> = rounds
            .into_iter()
            .filter(|r| r.state == RoundState::Closed)
            .collect();
        if closed.len() as u64 >= ROUNDS {
            break closed;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} rounds closed in time",
            closed.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("rounds closed after {:?}", started.elapsed());
    // Let the last version reach the agents.
    let latest = federation.models().latest().unwrap().unwrap();
    for handle in &handles {
        let wait = tokio::time::Instant::now() + Duration::from_secs(10);
        while handle.current().version < latest.version {
            assert!(
                tokio::time::Instant::now() < wait,
                "the agents got the last version"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    shutdown.cancel();
    link_task.await.unwrap();
    rounds_task.await.unwrap();
    for task in agent_tasks {
        let _ = task.await;
    }

    // Every round counted all four agents, none refused; each closed round made a version.
    let mut in_order = closed.clone();
    in_order.sort_by_key(|r| r.round);
    for r in &in_order {
        assert_eq!(r.accepted as usize, AGENTS, "round {}", r.round);
        assert!(r.produced_version > 1);
    }
    let losses: Vec<f64> = in_order.iter().map(|r| r.loss).collect();
    eprintln!("round losses: {losses:?}");

    // The agents' model is the hub's last version, byte for byte.
    let trained_bytes = federation.models().onnx(latest.version).unwrap();
    for handle in &handles {
        assert_eq!(handle.current().sha256, latest.sha256);
    }
    let trained: MlpModel = neural::onnx::decode(&trained_bytes).unwrap();
    // For the replay comparison in docs/learning.md: keep the trained model when asked.
    if let Some(out) = std::env::var_os("SYNAPSE_FEDERATED_MODEL_OUT") {
        std::fs::write(&out, &trained_bytes).expect("trained model written");
    }

    // The global training loss falls: the fleet's data, scored before and after.
    let trained_on: Vec<FunctionTrace> = trace.functions[..AGENTS * FUNCTIONS_PER_AGENT].to_vec();
    let train_pairs = all_pairs(&trained_on, trace.first_minute);
    let (before, after) = (
        samples::mean_loss(&initial, &train_pairs),
        samples::mean_loss(&trained, &train_pairs),
    );
    eprintln!("loss on the agents' functions: initial {before:.4}, trained {after:.4}");
    assert!(after < before, "training loss {before} → {after}");
    let k = 4;
    let early = losses[..k].iter().sum::<f64>() / k as f64;
    let late = losses[losses.len() - k..].iter().sum::<f64>() / k as f64;
    assert!(late < early, "round losses did not fall: {losses:?}");

    // Functions none of the agents trained on.
    let held_out = &trace.functions[trace.functions.len() - 100..];
    let held_pairs = all_pairs(held_out, trace.first_minute);
    let (before, after) = (
        samples::mean_loss(&initial, &held_pairs),
        samples::mean_loss(&trained, &held_pairs),
    );
    eprintln!("loss on held-out functions: initial {before:.4}, trained {after:.4}");
    assert!(after < before, "held-out loss {before} → {after}");
}
