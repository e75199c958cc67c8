//! A small ONNX classifier written by this project, for the ONNX function kind's demo and
//! tests: `logits = x · W + b` with `x` of shape `[N, 4]` and three classes; the agent's
//! `softmax` transform turns logits into probabilities. Weights are fixed numbers, so any
//! test can compute the reference answer by hand.

use prost::Message as _;
use tract_onnx::pb::GraphProto;

use crate::forecast::neural::onnx::{initializer, model_of, node, value_info};

pub const INPUT: &str = "x";
pub const OUTPUT: &str = "logits";
pub const FEATURES: usize = 4;
pub const CLASSES: usize = 3;

/// `W`, row-major `[FEATURES][CLASSES]`.
pub const WEIGHTS: [f32; FEATURES * CLASSES] = [
    0.5, -1.0, 0.25, //
    1.5, 0.75, -0.5, //
    -0.25, 0.5, 1.0, //
    0.125, -0.375, 0.625,
];
pub const BIAS: [f32; CLASSES] = [0.1, -0.2, 0.05];

/// The ONNX file's bytes.
pub fn encode() -> Vec<u8> {
    let graph = GraphProto {
        name: "synapse-sample-classifier".into(),
        node: vec![
            node("MatMul", &[INPUT, "W"], "xw"),
            node("Add", &["xw", "b"], OUTPUT),
        ],
        initializer: vec![
            initializer("W", &[FEATURES, CLASSES], &WEIGHTS),
            initializer("b", &[CLASSES], &BIAS),
        ],
        input: vec![value_info(INPUT, FEATURES as i64)],
        output: vec![value_info(OUTPUT, CLASSES as i64)],
        ..Default::default()
    };
    model_of(graph).encode_to_vec()
}
