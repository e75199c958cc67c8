//! Replay benchmark (prints figures; asserts nothing): the full replay of the 500-function,
//! 8-hour Azure 2019 sample with every default policy, and one forecasting step (observe the
//! last minute, decide) of our policy for 10,000 functions, plus tract's batched inference of
//! the neural model for the same 10,000 functions.
//!
//! `cargo bench -p synapse-agent --bench replay [-- TRACE_DIR]` (arguments that start with a
//! dash, such as the `--bench` cargo passes, are ignored).
//!
//! With `SYNAPSE_BENCH_SMOKE=1` it runs a short version that prints the same figures: the
//! first 30 minutes of every 25th function of the trace, a neural model pretrained for 50
//! steps, and the forecasting step and inference for 200 functions, once each; it asserts
//! nothing about timings.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use synapse_agent::forecast::neural::{self, TractRunner, onnx, train};
use synapse_agent::forecast::{MinuteCount, MlpForecaster};
use synapse_agent::policy::{IntervalObservation, PolicyConfig, PolicySpec, PoolPolicy};
use synapse_agent::replay::{self, LOAD_TIME_S, RunSetup};

/// Short runs that still print every figure (`SYNAPSE_BENCH_SMOKE=1`).
fn smoke() -> bool {
    std::env::var("SYNAPSE_BENCH_SMOKE").is_ok_and(|v| v == "1")
}

fn main() -> Result<()> {
    let smoke = smoke();
    let dir = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/traces/azure2019-500fn-8h")
        });
    let mut trace = replay::load_trace(&dir, 128.0)?;
    if smoke {
        trace = trace.part(0, 25).minutes_range(0, 30);
    }
    let config = PolicyConfig::default();
    let started = Instant::now();
    let (model, bytes) = if smoke {
        let pretrain = train::PretrainConfig {
            steps: 50,
            ..train::PretrainConfig::default()
        };
        let bytes = onnx::encode(&train::pretrain(&pretrain));
        (onnx::decode(&bytes).context("smoke model")?, bytes)
    } else {
        neural::default_model().context("default model")?
    };
    println!(
        "pretraining the neural model: {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let model = synapse_agent::forecast::ModelSource::from(Arc::new(model));
    let setup = RunSetup {
        trace: &trace,
        config: &config,
        model: &model,
        load_s: LOAD_TIME_S,
    };

    let specs = replay::policy_specs(&[], &[])?;
    let started = Instant::now();
    let runs = replay::run_all(&setup, &specs, &[1], false);
    let elapsed = started.elapsed().as_secs_f64();
    let invocations = trace.invocations() as f64 * runs.len() as f64;
    println!(
        "full replay, {} functions × {} minutes, {} policies, seed 1: {elapsed:.2} s \
         ({:.1} M invocations/s; target < 60 s)",
        trace.functions.len(),
        trace.minutes,
        specs.len(),
        invocations / elapsed / 1e6
    );
    for spec in &specs {
        let started = Instant::now();
        replay::replay(&setup, spec, 1);
        println!(
            "  {:<28} {:.2} s",
            spec.label(),
            started.elapsed().as_secs_f64()
        );
    }

    // 10,000 functions: the trace's functions repeated, each with two hours of history.
    let n = if smoke { 200 } else { 10_000 };
    let (history, repeats) = if smoke { (10, 1) } else { (120, 5) };
    let spec = PolicySpec::parse("forecast")?;
    let mut policies: Vec<Box<dyn PoolPolicy>> =
        (0..n).map(|_| spec.build(&config, &model)).collect();
    let observation = |i: usize, minute: usize| {
        let f = &trace.functions[i % trace.functions.len()];
        IntervalObservation {
            minute: MinuteCount {
                minute_of_day: (trace.first_minute + minute as u32) % 1440,
                invocations: f64::from(f.counts[minute % trace.minutes]),
            },
            mean_duration_s: f.duration_ms / 1000.0,
            memory_mb: f.memory_mb,
        }
    };
    for minute in 0..history {
        for (i, p) in policies.iter_mut().enumerate() {
            p.observe(&observation(i, minute));
        }
    }
    let mut best = f64::INFINITY;
    for step in 0..repeats {
        let started = Instant::now();
        let mut target = 0u64;
        for (i, p) in policies.iter_mut().enumerate() {
            p.observe(&observation(i, history + step));
            target += u64::from(p.decide(0.0).pool_target);
        }
        best = best.min(started.elapsed().as_secs_f64());
        std::hint::black_box(target);
    }
    println!(
        "one forecasting step (observe + decide, hybrid forecaster), {n} functions: \
         {:.1} ms (best of {repeats}; target < 100 ms)",
        best * 1e3
    );

    let runner = TractRunner::from_onnx(&bytes)?;
    let mut forecasters: Vec<MlpForecaster> =
        (0..n).map(|_| MlpForecaster::new(model.clone())).collect();
    for minute in 0..history.min(60) {
        for (i, f) in forecasters.iter_mut().enumerate() {
            use synapse_agent::forecast::Forecaster;
            f.observe(observation(i, minute).minute);
        }
    }
    let batch: Vec<_> = forecasters.iter().map(MlpForecaster::features).collect();
    let mut best = f64::INFINITY;
    for _ in 0..repeats {
        let started = Instant::now();
        std::hint::black_box(runner.run(&batch)?);
        best = best.min(started.elapsed().as_secs_f64());
    }
    println!(
        "tract inference of the ONNX model, one batch of {n} functions: {:.1} ms (best of {repeats})",
        best * 1e3
    );
    Ok(())
}
