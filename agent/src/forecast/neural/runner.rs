//! Runs the neural forecaster's ONNX file with tract, a batch of functions at a time: the
//! inference path of the shipped model artifact.

use std::sync::Arc;

use tract_onnx::prelude::*;

use super::mlp::INPUTS;

/// A loaded, optimised ONNX forecaster.
pub struct TractRunner {
    plan: Arc<TypedRunnableModel>,
}

/// tract refused the model or a batch.
#[derive(Debug, thiserror::Error)]
#[error("tract: {0}")]
pub struct RunnerError(String);

impl From<TractError> for RunnerError {
    fn from(e: TractError) -> Self {
        RunnerError(format!("{e:#}"))
    }
}

/// Loads, optimises and makes runnable the model of an ONNX file's bytes, which come from a
/// configuration, a rollout or the hub. tract refuses most malformed files with an error but
/// panics on some (a graph output that no node produces, found by fuzzing): such a panic is
/// caught here and is a refusal as well.
pub fn load_plan(bytes: &[u8]) -> Result<Arc<TypedRunnableModel>, RunnerError> {
    let load = || {
        tract_onnx::onnx()
            .model_for_read(&mut std::io::Cursor::new(bytes))?
            .into_optimized()?
            .into_runnable()
    };
    Ok(std::panic::catch_unwind(load).map_err(refused)??)
}

/// Runs `plan` on `inputs`, a panic of tract's being an error, as in [`load_plan`].
pub fn run_plan(
    plan: &Arc<TypedRunnableModel>,
    inputs: TVec<TValue>,
) -> Result<TVec<TValue>, RunnerError> {
    let run = std::panic::AssertUnwindSafe(|| plan.run(inputs));
    Ok(std::panic::catch_unwind(run).map_err(refused)??)
}

/// The error for a panic of tract's, with its message.
fn refused(panic: Box<dyn std::any::Any + Send>) -> RunnerError {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    RunnerError(format!("the model is malformed (tract failed: {message})"))
}

impl TractRunner {
    /// Loads and optimises the model from the bytes of an ONNX file.
    pub fn from_onnx(bytes: &[u8]) -> Result<Self, RunnerError> {
        Ok(Self {
            plan: load_plan(bytes)?,
        })
    }

    /// The model's outputs for a batch of feature vectors.
    pub fn run(&self, batch: &[[f32; INPUTS]]) -> Result<Vec<f32>, RunnerError> {
        let flat: Vec<f32> = batch.iter().flatten().copied().collect();
        let input = tract_ndarray::Array2::from_shape_vec((batch.len(), INPUTS), flat)
            .map_err(|e| RunnerError(e.to_string()))?;
        let outputs = run_plan(&self.plan, tvec!(Tensor::from(input).into()))?;
        let view = outputs[0].to_plain_array_view::<f32>()?;
        Ok(view.iter().copied().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{mlp::features, onnx, train};
    use super::*;

    #[test]
    fn tract_output_equals_the_rust_forward_pass() {
        let model = train::pretrain(&train::PretrainConfig {
            steps: 200,
            ..train::PretrainConfig::default()
        });
        let runner = TractRunner::from_onnx(&onnx::encode(&model)).expect("tract loads it");
        let batch: Vec<[f32; INPUTS]> = (0..64u32)
            .map(|f| {
                let recent: Vec<f64> = (0..60u32)
                    .map(|m| f64::from((m * 7 + f * 13) % (f + 3)))
                    .collect();
                features(&recent, f * 37 % 1440)
            })
            .collect();
        let from_tract = runner.run(&batch).expect("runs");
        assert_eq!(from_tract.len(), batch.len());
        for (x, t) in batch.iter().zip(&from_tract) {
            let rust = model.forward(x);
            assert!(
                (rust - f64::from(*t)).abs() <= 1e-5,
                "tract {t} vs rust {rust}"
            );
        }
    }

    /// A model whose graph output no node produces made tract panic while loading it (found
    /// by fuzzing, fuzz/corpus/onnx_model/crash-dd496b92...): it is refused with an error.
    #[test]
    fn a_model_that_makes_tract_panic_is_refused() {
        use prost::Message as _;
        let crash = include_bytes!(
            "../../../../fuzz/corpus/onnx_model/crash-dd496b926b94c3b10a980d1c4ff4cc9ea1994cec"
        );
        let graph = tract_onnx::pb::GraphProto {
            node: vec![onnx::node("Tanh", &["x"], "y")],
            input: vec![onnx::value_info("x", 4)],
            output: vec![onnx::value_info("nowhere", 4)],
            ..Default::default()
        };
        let produced_by_no_node = onnx::model_of(graph).encode_to_vec();
        for bytes in [&crash[..], &produced_by_no_node] {
            let err = TractRunner::from_onnx(bytes).err().expect("refused");
            assert!(err.to_string().contains("malformed"), "{err}");
            assert!(super::super::ServingModel::load(1, bytes).is_err());
        }
    }

    #[test]
    fn onnx_round_trip_keeps_every_weight() {
        let model = train::pretrain(&train::PretrainConfig {
            steps: 50,
            ..train::PretrainConfig::default()
        });
        let back = onnx::decode(&onnx::encode(&model)).expect("decodes");
        assert_eq!(back, model);
    }

    #[test]
    fn refuses_a_file_of_another_architecture() {
        use prost::Message;
        let model = train::pretrain(&train::PretrainConfig {
            steps: 1,
            ..train::PretrainConfig::default()
        });
        let mut proto = onnx::to_proto(&model);
        proto.metadata_props.clear();
        let err = onnx::decode(&proto.encode_to_vec()).unwrap_err();
        assert!(matches!(err, onnx::OnnxError::Architecture { .. }), "{err}");
    }
}
