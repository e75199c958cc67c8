//! The model's weights as the hub sees them: the float initializers of the ONNX graph,
//! concatenated in the order the graph lists them. The agents' gradients use the same flat
//! order (the agent's writer lists `W1, b1, W2, b2`, its backward pass lays the gradient out the
//! same way), so the hub can step any model of that shape without knowing its architecture.

use prost::Message;
use tract_onnx::pb::{ModelProto, TensorProto, tensor_proto::DataType};

/// An ONNX file the hub cannot train.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("not an ONNX model: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("the model has no graph")]
    NoGraph,
    #[error("initializer `{0}` is not a float tensor")]
    NotFloat(String),
    #[error("the model has no float weights")]
    Empty,
    #[error("expected {expected} weights, got {got}")]
    Count { expected: usize, got: usize },
    #[error("weight {0} is not finite")]
    NotFinite(usize),
}

/// The flat weights of an ONNX file.
pub fn read_weights(onnx: &[u8]) -> Result<Vec<f32>, WeightsError> {
    let model = ModelProto::decode(onnx)?;
    let graph = model.graph.ok_or(WeightsError::NoGraph)?;
    let mut weights = Vec::new();
    for tensor in &graph.initializer {
        weights.extend(floats(tensor)?);
    }
    if weights.is_empty() {
        return Err(WeightsError::Empty);
    }
    if let Some(i) = weights.iter().position(|w| !w.is_finite()) {
        return Err(WeightsError::NotFinite(i));
    }
    Ok(weights)
}

/// The ONNX file `onnx` with its weights replaced by `weights` (same count), everything else
/// (graph, metadata) kept.
pub fn write_weights(onnx: &[u8], weights: &[f32]) -> Result<Vec<u8>, WeightsError> {
    let mut model = ModelProto::decode(onnx)?;
    let graph = model.graph.as_mut().ok_or(WeightsError::NoGraph)?;
    let expected: usize = graph
        .initializer
        .iter()
        .map(|t| floats(t).map(|f| f.len()))
        .sum::<Result<usize, _>>()?;
    if expected != weights.len() {
        return Err(WeightsError::Count {
            expected,
            got: weights.len(),
        });
    }
    if let Some(i) = weights.iter().position(|w| !w.is_finite()) {
        return Err(WeightsError::NotFinite(i));
    }
    let mut rest = weights;
    for tensor in &mut graph.initializer {
        let n = floats(tensor)?.len();
        tensor.float_data = rest[..n].to_vec();
        tensor.raw_data.clear();
        rest = &rest[n..];
    }
    Ok(model.encode_to_vec())
}

fn floats(tensor: &TensorProto) -> Result<Vec<f32>, WeightsError> {
    if tensor.data_type != DataType::Float as i32 {
        return Err(WeightsError::NotFloat(tensor.name.clone()));
    }
    if !tensor.float_data.is_empty() {
        return Ok(tensor.float_data.clone());
    }
    Ok(tensor
        .raw_data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// A small ONNX file of the given initializer sizes (weights `0, 1, 2, …` scaled by `scale`),
/// for tests and benches of the hub without the agent's writer.
pub fn synthetic(sizes: &[usize], scale: f32) -> Vec<u8> {
    use tract_onnx::pb::GraphProto;
    let mut next = 0.0f32;
    let initializer = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| TensorProto {
            name: format!("w{i}"),
            dims: vec![n as i64],
            data_type: DataType::Float as i32,
            float_data: (0..n)
                .map(|_| {
                    next += 1.0;
                    next * scale
                })
                .collect(),
            ..Default::default()
        })
        .collect();
    ModelProto {
        ir_version: 8,
        graph: Some(GraphProto {
            name: "synthetic".into(),
            initializer,
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_round_trip_in_graph_order() {
        let file = synthetic(&[3, 2], 1.0);
        assert_eq!(read_weights(&file).unwrap(), vec![1.0, 2.0, 3.0, 4.0, 5.0]);
        let updated = write_weights(&file, &[5.0, 4.0, 3.0, 2.0, 1.0]).unwrap();
        assert_eq!(
            read_weights(&updated).unwrap(),
            vec![5.0, 4.0, 3.0, 2.0, 1.0]
        );
    }

    #[test]
    fn a_wrong_count_or_a_non_finite_weight_is_refused() {
        let file = synthetic(&[3], 1.0);
        assert!(matches!(
            write_weights(&file, &[1.0]),
            Err(WeightsError::Count {
                expected: 3,
                got: 1
            })
        ));
        assert!(matches!(
            write_weights(&file, &[1.0, f32::NAN, 0.0]),
            Err(WeightsError::NotFinite(1))
        ));
        assert!(matches!(
            read_weights(b"not onnx at all"),
            Err(WeightsError::Decode(_))
        ));
    }
}
