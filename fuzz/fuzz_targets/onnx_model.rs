//! Fuzz target: the agent's loading of an ONNX model file with tract, over the bytes of the
//! file, on the three paths that take one:
//! - an ONNX function's model (`runtime::onnx::OnnxModel::from_bytes`), with the signature of
//!   the shipped sample classifier (input `x` of 4 floats, output `logits`), then one row run;
//! - the neural forecaster's model as a rollout or the hub delivers it
//!   (`forecast::neural::ServingModel::load`: decode, tract load, cross-check);
//! - tract's load of any forecaster file (`forecast::neural::TractRunner::from_onnx`).
//!
//! Holds for every input: no panic escapes (each path answers a malformed model with an
//! error); a function model that loads runs a row or says why not. tract panics on some
//! malformed models, and the agent catches those at its boundary (`runner::load_plan`): the
//! target's panic hook is quiet, so a panic caught there passes and one that escapes still
//! ends the run (libFuzzer's harness aborts on it).

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use synapse_agent::{
    config::{ElementType, TensorInput, TensorOutput, Transform},
    forecast::neural::{ServingModel, TractRunner},
    runtime::onnx::OnnxModel,
};

fuzz_target!(init: std::panic::set_hook(Box::new(|_| {})), |data: &[u8]| {
    let inputs = [TensorInput {
        name: "x".into(),
        shape: vec![4],
        dtype: ElementType::F32,
    }];
    let outputs = [TensorOutput {
        name: "logits".into(),
        transform: Transform::Softmax,
    }];
    if let Ok(model) = OnnxModel::from_bytes(data, Path::new("fuzz.onnx"), &inputs, &outputs) {
        let _ = model.run(1, &[vec![0.5, -1.0, 2.0, 0.0]]);
    }
    let _ = ServingModel::load(1, data);
    let _ = TractRunner::from_onnx(data);
});
