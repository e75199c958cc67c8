//! ONNX functions: a model served inside the agent with tract, as a stateless function.
//!
//! A warm instance is the model loaded and optimised once (that load is its cold start),
//! listening on a loopback port of the agent so the gateway reaches it as any instance.
//! Requests are JSON, `{"inputs": {"x": [[...row...], ...]}}` (a single row may be given
//! without the outer list); answers are `{"outputs": {"y": [[...], ...]}}` with each output's
//! transform (none, sigmoid, softmax) applied per row. Concurrent requests are batched, up to
//! `batch_size` rows within `batch_wait`, and every row's answer is the same as alone.

use std::{net::SocketAddr, path::Path, sync::Arc, time::Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use axum::{Json, Router, extract::State, http::StatusCode, response::IntoResponse, routing::post};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tokio::sync::{mpsc, oneshot};
use tract_onnx::prelude::*;

use crate::config::{ElementType, FunctionSpec, TensorInput, Transform};

/// Rows of each output, by output name.
pub type NamedRows = Vec<(String, Vec<Vec<f64>>)>;

/// A loaded, optimised model with its signature resolved against the model's own names.
pub struct OnnxModel {
    plan: Arc<TypedRunnableModel>,
    inputs: Vec<TensorInput>,
    /// For each configured output: its index among the model's outputs and its transform.
    outputs: Vec<(String, usize, Transform)>,
}

/// Loads the function's model, checking its SHA-256 first when one is configured.
pub fn load(spec: &FunctionSpec) -> Result<OnnxModel> {
    let path = spec.model.as_deref().context("no model file")?;
    let bytes = std::fs::read(path).with_context(|| format!("reading model {}", path.display()))?;
    if let Some(expected) = &spec.model_sha256 {
        let actual = sha256_hex(&bytes);
        if !actual.eq_ignore_ascii_case(expected) {
            bail!(
                "model {} has SHA-256 {actual}, expected {expected}: refusing to load it",
                path.display()
            );
        }
    }
    OnnxModel::from_bytes(&bytes, path, &spec.inputs, &spec.outputs)
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl OnnxModel {
    pub fn from_bytes(
        bytes: &[u8],
        origin: &Path,
        inputs: &[TensorInput],
        outputs: &[crate::config::TensorOutput],
    ) -> Result<Self> {
        let plan = crate::forecast::neural::runner::load_plan(bytes)
            .map_err(|e| anyhow!("loading model {}: {e}", origin.display()))?;
        let model = plan.model();
        let input_names: Vec<String> = model
            .input_outlets()
            .map_err(|e| anyhow!("{e}"))?
            .iter()
            .map(|o| model.node(o.node).name.clone())
            .collect();
        if input_names.len() != inputs.len() {
            bail!(
                "model {} has inputs {input_names:?}, the function declares {}",
                origin.display(),
                inputs.len()
            );
        }
        let mut ordered = Vec::new();
        for name in &input_names {
            let declared = inputs
                .iter()
                .find(|i| &i.name == name)
                .with_context(|| format!("model input `{name}` is not in the function's inputs"))?;
            ordered.push(declared.clone());
        }
        let output_outlets = model.output_outlets().map_err(|e| anyhow!("{e}"))?;
        let output_names: Vec<String> = output_outlets
            .iter()
            .map(|o| {
                model
                    .outlet_label(*o)
                    .map(str::to_string)
                    .unwrap_or_else(|| model.node(o.node).name.clone())
            })
            .collect();
        let outputs = outputs
            .iter()
            .map(|o| {
                let index = output_names
                    .iter()
                    .position(|n| n == &o.name)
                    .with_context(|| {
                        format!("model has no output `{}` (it has {output_names:?})", o.name)
                    })?;
                Ok((o.name.clone(), index, o.transform))
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            plan,
            inputs: ordered,
            outputs,
        })
    }

    /// Runs a batch: per input, its rows flattened; returns per output its rows.
    pub fn run(&self, rows: usize, columns: &[Vec<f64>]) -> Result<NamedRows> {
        let mut tensors = TVec::new();
        for (input, data) in self.inputs.iter().zip(columns) {
            let mut shape = vec![rows];
            shape.extend(&input.shape);
            let t = match input.dtype {
                ElementType::F32 => {
                    let v: Vec<f32> = data.iter().map(|&x| x as f32).collect();
                    Tensor::from_shape(&shape, &v)
                }
                ElementType::F64 => Tensor::from_shape(&shape, data),
                ElementType::I32 => {
                    let v: Vec<i32> = data.iter().map(|&x| x as i32).collect();
                    Tensor::from_shape(&shape, &v)
                }
                ElementType::I64 => {
                    let v: Vec<i64> = data.iter().map(|&x| x as i64).collect();
                    Tensor::from_shape(&shape, &v)
                }
            }
            .map_err(|e| anyhow!("input `{}`: {e}", input.name))?;
            tensors.push(t.into());
        }
        let results = crate::forecast::neural::runner::run_plan(&self.plan, tensors)
            .map_err(|e| anyhow!("running the model: {e}"))?;
        self.outputs
            .iter()
            .map(|(name, index, transform)| {
                let t = results[*index]
                    .cast_to::<f64>()
                    .map_err(|e| anyhow!("{e}"))?;
                let flat: Vec<f64> = t
                    .to_plain_array_view::<f64>()
                    .map_err(|e| anyhow!("{e}"))?
                    .iter()
                    .copied()
                    .collect();
                let width = flat.len().checked_div(rows).unwrap_or(0);
                let per_row = flat
                    .chunks(width.max(1))
                    .map(|row| apply(*transform, row))
                    .collect();
                Ok((name.clone(), per_row))
            })
            .collect()
    }
}

fn apply(transform: Transform, row: &[f64]) -> Vec<f64> {
    match transform {
        Transform::None => row.to_vec(),
        Transform::Sigmoid => row.iter().map(|x| 1.0 / (1.0 + (-x).exp())).collect(),
        Transform::Softmax => {
            let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let exps: Vec<f64> = row.iter().map(|x| (x - max).exp()).collect();
            let sum: f64 = exps.iter().sum();
            exps.iter().map(|e| e / sum).collect()
        }
    }
}

/// Rows of one request, per input, flattened; checked against the signature.
fn parse_request(inputs: &[TensorInput], body: &Value) -> Result<(usize, Vec<Vec<f64>>), String> {
    let given = body
        .get("inputs")
        .and_then(Value::as_object)
        .ok_or("the request must be a JSON object with an `inputs` object")?;
    let mut rows = None;
    let mut columns = Vec::new();
    for input in inputs {
        let value = given
            .get(&input.name)
            .ok_or_else(|| format!("input `{}` is missing", input.name))?;
        let width: usize = input.shape.iter().product();
        let list = value
            .as_array()
            .ok_or_else(|| format!("input `{}` must be an array", input.name))?;
        // One row given bare, or a list of rows.
        let row_values: Vec<&Value> = if list.first().is_some_and(Value::is_array) {
            list.iter().collect()
        } else {
            vec![value]
        };
        let mut flat = Vec::with_capacity(row_values.len() * width);
        for row in &row_values {
            let before = flat.len();
            flatten(row, &mut flat).map_err(|e| format!("input `{}`: {e}", input.name))?;
            if flat.len() - before != width {
                return Err(format!(
                    "input `{}`: each row needs {width} values (shape {:?}), got {}",
                    input.name,
                    input.shape,
                    flat.len() - before
                ));
            }
        }
        match rows {
            None => rows = Some(row_values.len()),
            Some(n) if n != row_values.len() => {
                return Err("every input needs the same number of rows".into());
            }
            _ => {}
        }
        columns.push(flat);
    }
    Ok((rows.unwrap_or(0), columns))
}

fn flatten(v: &Value, out: &mut Vec<f64>) -> Result<(), String> {
    match v {
        Value::Array(items) => items.iter().try_for_each(|i| flatten(i, out)),
        Value::Number(n) => {
            let x = n.as_f64().ok_or("a number out of range")?;
            if !x.is_finite() {
                return Err("values must be finite".into());
            }
            out.push(x);
            Ok(())
        }
        _ => Err(format!("expected numbers, found {v}")),
    }
}

struct Job {
    rows: usize,
    columns: Vec<Vec<f64>>,
    reply: oneshot::Sender<Result<NamedRows, String>>,
}

/// Collects jobs into batches and runs them on a blocking thread, one batch at a time.
async fn batcher(
    model: Arc<OnnxModel>,
    mut jobs: mpsc::Receiver<Job>,
    batch_size: usize,
    wait: std::time::Duration,
) {
    while let Some(first) = jobs.recv().await {
        let mut batch = vec![first];
        let mut rows = batch[0].rows;
        let deadline = tokio::time::Instant::now() + wait;
        while rows < batch_size {
            match tokio::time::timeout_at(deadline, jobs.recv()).await {
                Ok(Some(job)) => {
                    rows += job.rows;
                    batch.push(job);
                }
                _ => break,
            }
        }
        let m = model.clone();
        let columns: Vec<Vec<f64>> = (0..m.inputs.len())
            .map(|i| {
                batch
                    .iter()
                    .flat_map(|j| j.columns[i].iter().copied())
                    .collect()
            })
            .collect();
        let result = tokio::task::spawn_blocking(move || m.run(rows, &columns)).await;
        let outputs = match result {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => {
                batch
                    .into_iter()
                    .for_each(|j| drop(j.reply.send(Err(format!("{e:#}")))));
                continue;
            }
            Err(e) => {
                batch
                    .into_iter()
                    .for_each(|j| drop(j.reply.send(Err(format!("model task failed: {e}")))));
                continue;
            }
        };
        // Hand each job its own rows back.
        let mut offset = 0;
        for job in batch {
            let mine = outputs
                .iter()
                .map(|(name, all)| (name.clone(), all[offset..offset + job.rows].to_vec()))
                .collect();
            offset += job.rows;
            let _ = job.reply.send(Ok(mine));
        }
    }
}

#[derive(Clone)]
struct Serving {
    inputs: Arc<Vec<TensorInput>>,
    jobs: mpsc::Sender<Job>,
}

async fn infer(State(s): State<Serving>, body: axum::body::Bytes) -> axum::response::Response {
    let bad = |m: String| (StatusCode::BAD_REQUEST, Json(json!({ "error": m }))).into_response();
    let value: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return bad(format!("the request is not JSON: {e}")),
    };
    let (rows, columns) = match parse_request(&s.inputs, &value) {
        Ok(r) => r,
        Err(e) => return bad(e),
    };
    let (tx, rx) = oneshot::channel();
    if s.jobs
        .send(Job {
            rows,
            columns,
            reply: tx,
        })
        .await
        .is_err()
    {
        return (StatusCode::SERVICE_UNAVAILABLE, "instance stopping").into_response();
    }
    match rx.await {
        Ok(Ok(outputs)) => {
            let map: serde_json::Map<String, Value> = outputs
                .into_iter()
                .map(|(n, rows)| (n, json!(rows)))
                .collect();
            Json(json!({ "outputs": map })).into_response()
        }
        Ok(Err(e)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({ "error": e })),
        )
            .into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "model task gone").into_response(),
    }
}

/// A warm ONNX instance: listening, batching, until `stop` resolves.
pub struct OnnxInstance {
    pub addr: SocketAddr,
    pub load_time: std::time::Duration,
    listener: tokio::net::TcpListener,
    app: Router,
}

/// Loads the model (the cold start) and binds the instance's port.
pub async fn start(spec: &FunctionSpec) -> Result<OnnxInstance> {
    let t0 = Instant::now();
    let owned = spec.clone();
    let model = tokio::task::spawn_blocking(move || load(&owned)).await??;
    let load_time = t0.elapsed();
    let inputs = Arc::new(model.inputs.clone());
    let (tx, rx) = mpsc::channel(1024);
    tokio::spawn(batcher(
        Arc::new(model),
        rx,
        spec.batch_size,
        spec.batch_wait,
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = Router::new()
        .fallback(post(infer))
        .with_state(Serving { inputs, jobs: tx });
    Ok(OnnxInstance {
        addr,
        load_time,
        listener,
        app,
    })
}

impl OnnxInstance {
    pub async fn serve(self, stop: impl std::future::Future<Output = ()> + Send + 'static) {
        let _ = axum::serve(self.listener, self.app)
            .with_graceful_shutdown(stop)
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn x(shape: Vec<usize>) -> Vec<TensorInput> {
        vec![TensorInput {
            name: "x".into(),
            shape,
            dtype: ElementType::F32,
        }]
    }

    #[test]
    fn requests_take_one_row_or_many_and_are_checked_against_the_signature() {
        let one = parse_request(&x(vec![2]), &json!({"inputs": {"x": [1.0, 2.0]}})).unwrap();
        assert_eq!(one, (1, vec![vec![1.0, 2.0]]));
        let two = parse_request(&x(vec![2]), &json!({"inputs": {"x": [[1, 2], [3, 4]]}})).unwrap();
        assert_eq!(two, (2, vec![vec![1.0, 2.0, 3.0, 4.0]]));
        let err = parse_request(&x(vec![3]), &json!({"inputs": {"x": [1, 2]}})).unwrap_err();
        assert!(err.contains("each row needs 3 values"), "{err}");
        assert!(parse_request(&x(vec![1]), &json!({"x": [1]})).is_err());
        assert!(parse_request(&x(vec![1]), &json!({"inputs": {"x": ["a"]}})).is_err());
    }

    #[test]
    fn softmax_rows_sum_to_one_and_keep_their_order() {
        let p = apply(Transform::Softmax, &[1.0, 3.0, 2.0]);
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!(p[1] > p[2] && p[2] > p[0]);
        assert!((apply(Transform::Sigmoid, &[0.0])[0] - 0.5).abs() < 1e-12);
    }
}
