//! The ONNX function kind through the gateway: a model written by the project's own code,
//! answers equal to a reference computed by hand, batched answers equal to single ones, and a
//! model whose hash does not match refused. Runs as root (the agent loads eBPF programs).

mod common;

use common::*;
use synapse_agent::runtime::{
    onnx::sha256_hex,
    sample_model::{self, BIAS, CLASSES, FEATURES, WEIGHTS},
};

/// Softmax(x · W + b), computed here without tract.
fn reference(x: &[f64; FEATURES]) -> Vec<f64> {
    let logits: Vec<f64> = (0..CLASSES)
        .map(|c| {
            f64::from(BIAS[c])
                + (0..FEATURES)
                    .map(|i| x[i] * f64::from(WEIGHTS[i * CLASSES + c]))
                    .sum::<f64>()
        })
        .collect();
    let max = logits.iter().copied().fold(f64::MIN, f64::max);
    let exps: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.iter().map(|e| e / sum).collect()
}

fn row(i: usize) -> [f64; FEATURES] {
    [
        i as f64 * 0.5 - 3.0,
        (i % 7) as f64,
        -(i as f64) / 10.0,
        1.0,
    ]
}

fn config(model: &std::path::Path, sha: &str) -> String {
    format!(
        "[[functions]]\nname = \"classify\"\nkind = \"onnx\"\nmodel = \"{}\"\nmodel_sha256 = \"{sha}\"\n\
         batch_size = 8\nbatch_wait = \"20ms\"\nconcurrency = 64\nmax_instances = 1\n\
         [[functions.inputs]]\nname = \"x\"\nshape = [4]\n\
         [[functions.outputs]]\nname = \"logits\"\ntransform = \"softmax\"\n",
        model.display()
    )
}

fn probabilities(r: &Reply) -> Vec<Vec<f64>> {
    assert_eq!(r.status, 200, "{r:?}");
    serde_json::from_value(r.json()["outputs"]["logits"].clone()).unwrap()
}

#[test]
fn onnx_answers_match_the_reference_alone_and_in_batches() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("classifier.onnx");
    let bytes = sample_model::encode();
    std::fs::write(&model, &bytes).unwrap();
    let subtree = format!("synapse-test-onnx-{}", std::process::id());
    let agent = Agent::start(
        dir.path(),
        free_ports(1),
        &subtree,
        &config(&model, &sha256_hex(&bytes)),
    );

    // One at a time: the first is the cold start (load + optimise), the rest warm.
    let mut single = Vec::new();
    for i in 0..12 {
        let body = serde_json::json!({ "inputs": { "x": row(i) } }).to_string();
        let r = agent.invoke("classify", "", body.as_bytes());
        if i == 0 {
            assert_eq!(r.header("x-synapse-start"), Some("cold"));
        }
        let p = probabilities(&r);
        for (got, want) in p[0].iter().zip(reference(&row(i))) {
            assert!((got - want).abs() < 1e-5, "row {i}: {got} vs {want}");
        }
        single.push(p[0].clone());
    }
    // Concurrently, so the instance batches them: the same answers.
    let gateway = agent.gateway;
    let handles: Vec<_> = (0..12)
        .map(|i| {
            std::thread::spawn(move || {
                let body = serde_json::json!({ "inputs": { "x": row(i) } }).to_string();
                (
                    i,
                    http_post(gateway, "/v1/functions/classify/invoke", body.as_bytes()),
                )
            })
        })
        .collect();
    for h in handles {
        let (i, r) = h.join().unwrap();
        let p = probabilities(&r);
        for (a, b) in p[0].iter().zip(&single[i]) {
            assert!((a - b).abs() < 1e-9, "row {i}: batched {a} vs single {b}");
        }
    }
    // Several rows in one request.
    let body = serde_json::json!({ "inputs": { "x": [row(1), row(2), row(3)] } }).to_string();
    let p = probabilities(&agent.invoke("classify", "", body.as_bytes()));
    assert_eq!(p.len(), 3);
    assert!((p[2][0] - single[3][0]).abs() < 1e-9);
    // A malformed request gets a clear 400.
    let bad = agent.invoke("classify", "", br#"{"inputs": {"x": [1, 2]}}"#);
    assert_eq!(bad.status, 400);
    assert!(
        bad.json()["error"]
            .as_str()
            .unwrap()
            .contains("each row needs 4 values")
    );
    assert_eq!(
        agent.metric("synapse_cold_starts_total{function=\"classify\"}"),
        Some(1.0)
    );
    assert!(agent.stop());
}

#[test]
fn a_model_whose_hash_does_not_match_is_refused() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("classifier.onnx");
    std::fs::write(&model, sample_model::encode()).unwrap();
    let subtree = format!("synapse-test-onnxhash-{}", std::process::id());
    let wrong = "0".repeat(64);
    let agent = Agent::start(dir.path(), free_ports(1), &subtree, &config(&model, &wrong));
    let r = agent.invoke("classify", "", br#"{"inputs": {"x": [1, 2, 3, 4]}}"#);
    assert_eq!(r.status, 503, "{r:?}");
    let msg = r.json()["error"].as_str().unwrap().to_string();
    assert!(
        msg.contains("expected 0000") && msg.contains("refusing to load it"),
        "{msg}"
    );
    assert!(agent.stop());
}
