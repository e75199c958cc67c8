//! Aggregation benchmark (prints figures; not a test): the time to turn 1,000 clients'
//! gradients of the neural forecaster's size into one update — clipping, aggregation and the
//! optimizer step, as a round's close runs them — with each aggregator; and the bytes one agent
//! sends and receives per round on the link (round open, gradient report, and a new version's
//! offer and chunks), encoded exactly as the link frames them.
//!
//! Run: `cargo bench -p synapse-hub --bench aggregation` (optional: `AGG_CLIENTS=1000`,
//! `AGG_REPEATS=20`). With `SYNAPSE_BENCH_SMOKE=1` the defaults are 50 clients and 2 repeats
//! (the variables still apply), and the same figures are printed; nothing about timings is
//! asserted.

use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng, rngs::StdRng};
use synapse_hub::{
    federation::{
        FederationConfig,
        aggregate::{Aggregator, Contribution},
        optimizer::Optimizer,
        update::apply_round,
    },
    models::{onnx, sha256_hex},
};
use synapse_link::codec;
use synapse_proto::link::v1::{
    Frame, GradientReport, ModelChunk, ModelOffer, RoundOpen, frame::Body,
};

/// The forecaster's initializers: W1 19×16, b1 16, W2 16×1, b2 1 (337 weights).
const SIZES: [usize; 4] = [19 * 16, 16, 16, 1];

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn frame_bytes(body: Body) -> usize {
    codec::encode(&Frame { body: Some(body) }).len()
}

/// Short runs that still print every figure (`SYNAPSE_BENCH_SMOKE=1`).
fn smoke() -> bool {
    std::env::var("SYNAPSE_BENCH_SMOKE").is_ok_and(|v| v == "1")
}

fn main() {
    let smoke = smoke();
    let clients = env("AGG_CLIENTS", if smoke { 50 } else { 1000 });
    let repeats = env("AGG_REPEATS", if smoke { 2 } else { 20 }).max(1);
    let parameters: usize = SIZES.iter().sum();
    let mut rng = StdRng::seed_from_u64(1);
    let contributions: Vec<Contribution> = (0..clients)
        .map(|_| Contribution {
            gradient: (0..parameters)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect(),
            samples: rng.random_range(100..20_000),
        })
        .collect();
    let weights = vec![0.1f32; parameters];
    println!(
        "aggregation of {clients} gradients of {parameters} weights (clip, aggregate, Adam step), best and median of {repeats}:"
    );
    for aggregator in [
        Aggregator::Mean,
        Aggregator::TrimmedMean,
        Aggregator::Median,
    ] {
        let config = FederationConfig {
            aggregator,
            ..FederationConfig::default()
        };
        let mut times: Vec<Duration> = (0..repeats)
            .map(|_| {
                let mut optimizer =
                    Optimizer::new(config.optimizer, config.learning_rate, 0.9, parameters);
                let input = contributions.clone();
                let start = Instant::now();
                let update = apply_round(&config, &mut optimizer, &weights, input, 7);
                let elapsed = start.elapsed();
                assert!(update.is_some());
                elapsed
            })
            .collect();
        times.sort();
        println!(
            "  {:<13} best {:>8.2} ms   median {:>8.2} ms",
            aggregator.name(),
            times[0].as_secs_f64() * 1e3,
            times[times.len() / 2].as_secs_f64() * 1e3
        );
    }

    let model = onnx::synthetic(&SIZES, 0.01);
    let sha = sha256_hex(&model);
    let chunk = FederationConfig::default().chunk_bytes;
    let round_open = frame_bytes(Body::RoundOpen(RoundOpen {
        round: 1_000_000,
        model_version: 1_000_000,
        model_sha256: sha.clone(),
        parameters: parameters as u32,
        deadline_unix_ms: 1_800_000_000_000,
    }));
    let report = frame_bytes(Body::GradientReport(GradientReport {
        round: 1_000_000,
        model_version: 1_000_000,
        gradient: vec![0.123; parameters],
        samples: 20_000,
        loss: 0.04,
    }));
    let offer = frame_bytes(Body::ModelOffer(ModelOffer {
        version: 1_000_001,
        sha256: sha,
        size_bytes: model.len() as u64,
        chunks: model.len().div_ceil(chunk) as u32,
        parent: 1_000_000,
        round: 1_000_000,
    }));
    let chunks: usize = model
        .chunks(chunk)
        .enumerate()
        .map(|(index, data)| {
            frame_bytes(Body::ModelChunk(ModelChunk {
                version: 1_000_001,
                index: index as u32,
                data: data.to_vec(),
            }))
        })
        .sum();
    println!("bytes per round per agent (link frames, before QUIC/TLS overhead):");
    println!("  hub → agent   round open        {round_open:>6}");
    println!("  agent → hub   gradient report   {report:>6}");
    println!(
        "  hub → agent   new version       {:>6}  (offer {offer} + chunks {chunks}; ONNX file {} bytes)",
        offer + chunks,
        model.len()
    );
    println!(
        "  total                           {:>6}",
        round_open + report + offer + chunks
    );
}
