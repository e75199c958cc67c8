//! Writes the MLP's weights as an ONNX model (a prost-encoded `ModelProto`) and reads them back.
//! The file is the single source of the neural forecaster's weights: tract runs it, and the
//! Rust passes read their weights from it.

use prost::Message;
use tract_onnx::pb::{
    self, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto, tensor_proto::DataType,
    tensor_shape_proto::Dimension, tensor_shape_proto::dimension::Value as DimValue,
    type_proto::Tensor as TensorType, type_proto::Value as TypeValue,
};

use super::mlp::{HIDDEN, INPUTS, MlpModel, WeightsError};

/// Name of the model's input, `[N, 19]` float.
pub const INPUT: &str = "features";
/// Name of the model's output, `[N, 1]` float.
pub const OUTPUT: &str = "log_rate";
/// The `synapse.architecture` metadata every file carries.
pub const ARCHITECTURE: &str = "mlp-19x16-tanh-1/v1";

/// An ONNX file that is not a model of this architecture.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    #[error("not an ONNX model: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("the model has no graph")]
    NoGraph,
    #[error("architecture {found:?} is not {ARCHITECTURE:?}")]
    Architecture { found: String },
    #[error("initializer `{name}` is missing")]
    MissingInitializer { name: &'static str },
    #[error("initializer `{name}` has {got} values, expected {expected}")]
    InitializerSize {
        name: &'static str,
        got: usize,
        expected: usize,
    },
    #[error("bad weights: {0}")]
    Weights(#[from] WeightsError),
}

pub fn initializer(name: &str, dims: &[usize], values: &[f32]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: DataType::Float as i32,
        float_data: values.to_vec(),
        ..Default::default()
    }
}

pub fn node(op: &str, inputs: &[&str], output: &str) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        name: output.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        ..Default::default()
    }
}

pub fn value_info(name: &str, width: i64) -> ValueInfoProto {
    let dim = |v| Dimension {
        value: Some(v),
        ..Default::default()
    };
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(TypeValue::TensorType(TensorType {
                elem_type: DataType::Float as i32,
                shape: Some(TensorShapeProto {
                    dim: vec![
                        dim(DimValue::DimParam("N".into())),
                        dim(DimValue::DimValue(width)),
                    ],
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The ONNX model of `model`, as a `ModelProto`.
pub fn to_proto(model: &MlpModel) -> ModelProto {
    let graph = GraphProto {
        name: "synapse-forecast-mlp".into(),
        node: vec![
            node("MatMul", &[INPUT, "W1"], "z1"),
            node("Add", &["z1", "b1"], "a1"),
            node("Tanh", &["a1"], "h"),
            node("MatMul", &["h", "W2"], "z2"),
            node("Add", &["z2", "b2"], OUTPUT),
        ],
        initializer: vec![
            initializer("W1", &[INPUTS, HIDDEN], model.w1()),
            initializer("b1", &[HIDDEN], model.b1()),
            initializer("W2", &[HIDDEN, 1], model.w2()),
            initializer("b2", &[1], &[model.b2()]),
        ],
        input: vec![value_info(INPUT, INPUTS as i64)],
        output: vec![value_info(OUTPUT, 1)],
        ..Default::default()
    };
    ModelProto {
        doc_string: "SynapseStream demand forecaster: ln(1+next-minute invocations)".into(),
        metadata_props: vec![StringStringEntryProto {
            key: "synapse.architecture".into(),
            value: ARCHITECTURE.into(),
        }],
        ..model_of(graph)
    }
}

/// A model of `graph` as this project writes them: IR 8, the default opset 13, produced by
/// the agent at its version.
pub fn model_of(graph: GraphProto) -> ModelProto {
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 13,
        }],
        producer_name: "synapse-agent".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(graph),
        ..Default::default()
    }
}

/// The ONNX file's bytes for `model`.
pub fn encode(model: &MlpModel) -> Vec<u8> {
    to_proto(model).encode_to_vec()
}

/// Reads the weights back from an ONNX file written by [`encode`].
pub fn decode(bytes: &[u8]) -> Result<MlpModel, OnnxError> {
    let proto = ModelProto::decode(bytes)?;
    let found = proto
        .metadata_props
        .iter()
        .find(|p| p.key == "synapse.architecture")
        .map(|p| p.value.clone())
        .unwrap_or_default();
    if found != ARCHITECTURE {
        return Err(OnnxError::Architecture { found });
    }
    let graph = proto.graph.ok_or(OnnxError::NoGraph)?;
    let mut params = Vec::with_capacity(super::mlp::PARAMETERS);
    for (name, expected) in [
        ("W1", INPUTS * HIDDEN),
        ("b1", HIDDEN),
        ("W2", HIDDEN),
        ("b2", 1),
    ] {
        let tensor = graph
            .initializer
            .iter()
            .find(|t| t.name == name)
            .ok_or(OnnxError::MissingInitializer { name })?;
        let values = floats(tensor);
        if values.len() != expected {
            return Err(OnnxError::InitializerSize {
                name,
                got: values.len(),
                expected,
            });
        }
        params.extend(values);
    }
    Ok(MlpModel::from_params(params)?)
}

/// Float values of a tensor, from `float_data` or little-endian `raw_data`.
fn floats(tensor: &pb::TensorProto) -> Vec<f32> {
    if !tensor.float_data.is_empty() {
        return tensor.float_data.clone();
    }
    tensor
        .raw_data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}
