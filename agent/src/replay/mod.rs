//! `synapse-agent replay`: runs the shipped forecasters and pool policies over a recorded trace
//! with a virtual clock, side by side with the baselines, measured as in `EVALUATION.md`.

mod driver;
pub mod metrics;
mod report;
pub mod sim;

pub use driver::{PRIOR_REFRESH_MINUTES, RunSetup, RunTallies, replay};
pub use metrics::{Summary, floor, summarize};
pub use report::{PolicyResult, json, svg, table};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use rayon::prelude::*;

use crate::forecast::MlpModel;
use crate::forecast::neural::{self, onnx};
use crate::policy::{PolicyConfig, PolicySpec};
use crate::trace::{Trace, load_azure2019, load_azure2021};

/// The baselines every replay prints beside ours.
pub const BASELINES: [&str; 5] = [
    "fixed-keepalive(10m)",
    "fixed-keepalive(20m)",
    "fixed-keepalive(1h)",
    "fixed-keepalive(2h)",
    "hybrid-histogram",
];

/// Which part of the trace is counted (policies always learn from its start).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Window {
    Whole,
    SecondHalf,
}

/// Arguments of `synapse-agent replay`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReplayArgs {
    /// Trace: a directory in the Azure 2019 layout, or a 2021 per-invocation CSV file.
    #[arg(long)]
    pub trace: PathBuf,
    /// Policy to replay, repeatable: `forecast`, `forecast(cost_threshold=300)`,
    /// `forecast(forecaster=arima)`, `fixed-keepalive(10m)`, `hybrid-histogram`.
    /// The baselines are always replayed too.
    #[arg(long = "policy")]
    pub policies: Vec<String>,
    /// Sweep our knob: adds `forecast(cost_threshold=X)` for each comma-separated X.
    #[arg(long, value_delimiter = ',')]
    pub sweep: Vec<f64>,
    /// Arrival seed, repeatable; results are means over seeds.
    #[arg(long = "seed", default_values_t = [1u64])]
    pub seeds: Vec<u64>,
    /// Files read and written.
    #[command(flatten)]
    pub files: Box<ReplayFiles>,
    /// Count the whole trace or only its second half.
    #[arg(long, value_enum, default_value = "whole")]
    pub window: Window,
    /// Memory per instance for traces that carry none (the 2021 layout), MB.
    #[arg(long, default_value_t = 128.0)]
    pub memory_mb: f64,
    /// Only part of the functions: `K/N`, every N-th function from the K-th (0-based), so that
    /// `0/2` and `1/2` are disjoint halves of the trace; or `A..B`, the functions at positions
    /// A..B of the file (end excluded).
    #[arg(long, value_parser = parse_functions)]
    pub functions: Option<FunctionPart>,
    /// Only minutes `A..B` of the trace (0-based, end excluded), replayed as a trace of their
    /// own: policies start with nothing learned at minute A.
    #[arg(long, value_parser = parse_range)]
    pub minutes: Option<(usize, usize)>,
}

/// Which functions of a trace are replayed (`--functions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FunctionPart {
    /// Every `of`-th function from the `index`-th.
    EveryNth { index: usize, of: usize },
    /// Positions `from..to` of the file.
    Range { from: usize, to: usize },
}

impl std::fmt::Display for FunctionPart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::EveryNth { index, of } => write!(f, "{index}/{of}"),
            Self::Range { from, to } => write!(f, "{from}..{to}"),
        }
    }
}

fn parse_functions(text: &str) -> Result<FunctionPart, String> {
    if text.contains("..") {
        let (from, to) = parse_range(text)?;
        return Ok(FunctionPart::Range { from, to });
    }
    let (index, of) = parse_part(text)?;
    Ok(FunctionPart::EveryNth { index, of })
}

/// Two numbers `X{sep}Y` named `names` (for the messages), with `example` shown when the
/// separator is missing.
fn parse_pair(
    text: &str,
    sep: &str,
    names: (&str, &str),
    example: &str,
) -> Result<(usize, usize), String> {
    let (x, y) = text.split_once(sep).ok_or_else(|| {
        format!(
            "`{text}`: expected {}{sep}{}, e.g. {example}",
            names.0, names.1
        )
    })?;
    let number = |v: &str, name: &str| {
        v.trim()
            .parse::<usize>()
            .map_err(|e| format!("{name} in `{text}`: {e}"))
    };
    Ok((number(x, names.0)?, number(y, names.1)?))
}

fn parse_part(text: &str) -> Result<(usize, usize), String> {
    let (k, n) = parse_pair(text, "/", ("K", "N"), "0/2")?;
    if n == 0 || k >= n {
        return Err(format!("`{text}`: need 0 <= K < N"));
    }
    Ok((k, n))
}

fn parse_range(text: &str) -> Result<(usize, usize), String> {
    let (a, b) = parse_pair(text, "..", ("A", "B"), "0..240")?;
    if a >= b {
        return Err(format!("`{text}`: need A < B"));
    }
    Ok((a, b))
}

/// Files of `synapse-agent replay` (apart from the trace).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ReplayFiles {
    /// Write the results as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the trade-off plot as SVG.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Policy settings (TOML, see docs/replay.md); defaults otherwise.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// ONNX file of the neural forecaster; without it the pretrained default model is used.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Write the neural forecaster's ONNX file used by this replay.
    #[arg(long)]
    pub save_model: Option<PathBuf>,
}

/// Load time of a new instance (L in `EVALUATION.md`), seconds.
pub const LOAD_TIME_S: f64 = 1.0;

/// Runs the replay command.
pub fn run(args: ReplayArgs) -> Result<()> {
    let mut trace = load_trace(&args.trace, args.memory_mb)?;
    if let Some(part) = args.functions {
        trace = match part {
            FunctionPart::EveryNth { index, of } => trace.part(index, of),
            FunctionPart::Range { from, to } => {
                let mut t = trace;
                let to = to.min(t.functions.len());
                t.functions = t.functions.drain(from.min(to)..to).collect();
                t
            }
        };
        trace.name = format!("{} (functions {part})", trace.name);
    }
    if let Some((a, b)) = args.minutes {
        if a >= trace.minutes {
            bail!(
                "--minutes {a}..{b}: the trace has {} minutes",
                trace.minutes
            );
        }
        trace = trace.minutes_range(a, b);
        trace.name = format!("{} (minutes {a}..{b})", trace.name);
    }
    if trace.functions.is_empty() {
        bail!("no function of the trace is in --functions");
    }
    let config = load_config(args.files.config.as_deref())?;
    let model = crate::forecast::ModelSource::from(Arc::new(load_model(
        args.files.model.as_deref(),
        args.files.save_model.as_deref(),
    )?));
    let specs = policy_specs(&args.policies, &args.sweep)?;
    let mut seeds = args.seeds.clone();
    seeds.dedup();
    eprintln!(
        "replaying {} functions, {} minutes, {} invocations: {} policies × {} seeds",
        trace.functions.len(),
        trace.minutes,
        trace.invocations(),
        specs.len(),
        seeds.len()
    );
    let setup = RunSetup {
        trace: &trace,
        config: &config,
        model: &model,
        load_s: LOAD_TIME_S,
    };
    let started = Instant::now();
    let runs = run_all(&setup, &specs, &seeds, true);
    eprintln!("replayed in {:.1} s", started.elapsed().as_secs_f64());
    let results = results(&specs, &seeds, &runs, args.window);
    let half = match args.window {
        Window::Whole => 0,
        Window::SecondHalf => trace.minutes / 2,
    };
    let counts: Vec<&[u32]> = trace
        .functions
        .iter()
        .map(|f| f.counts.as_slice())
        .collect();
    let floor = floor(&counts, half);
    println!(
        "trace {} · {} functions · {} invocations · window {:?} · seeds {:?} · L = {LOAD_TIME_S} s",
        trace.name,
        trace.functions.len(),
        trace.invocations(),
        args.window,
        seeds
    );
    print!("{}", table(&results, &floor, seeds.len()));
    if let Some(path) = &args.files.json {
        let doc = serde_json::to_string_pretty(&json(&trace.name, &seeds, &results))?;
        std::fs::write(path, doc + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.files.plot {
        let title = format!("{} ({:?} window)", trace.name, args.window);
        std::fs::write(path, svg(&results, floor.p75_app_cold_start_pct, &title))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Loads a trace directory (2019 layout) or file (2021 layout).
pub fn load_trace(path: &Path, memory_mb: f64) -> Result<Trace> {
    let trace = if path.is_dir() {
        load_azure2019(path)
    } else {
        load_azure2021(path, memory_mb)
    };
    let trace = trace.with_context(|| format!("loading trace {}", path.display()))?;
    if trace.functions.is_empty() {
        bail!("trace {} has no functions", path.display());
    }
    Ok(trace)
}

fn load_config(path: Option<&Path>) -> Result<PolicyConfig> {
    let Some(path) = path else {
        return Ok(PolicyConfig::default());
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("{}: invalid policy config", path.display()))
}

fn load_model(path: Option<&Path>, save: Option<&Path>) -> Result<MlpModel> {
    let (model, bytes) = match path {
        Some(p) => {
            let bytes = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
            let model = onnx::decode(&bytes).with_context(|| format!("{}", p.display()))?;
            (model, bytes)
        }
        None => neural::default_model().context("building the default neural model")?,
    };
    if let Some(p) = save {
        std::fs::write(p, &bytes).with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(model)
}

/// The policies of a replay: the baselines, then the requested ones and the sweep.
pub fn policy_specs(requested: &[String], sweep: &[f64]) -> Result<Vec<PolicySpec>> {
    let mut specs = Vec::new();
    let mut names: Vec<String> = BASELINES.iter().map(|s| s.to_string()).collect();
    names.extend(requested.iter().cloned());
    names.extend(
        sweep
            .iter()
            .map(|c| format!("forecast(cost_threshold={c})")),
    );
    if requested.is_empty() && sweep.is_empty() {
        names.push("forecast".into());
    }
    for name in names {
        let spec = PolicySpec::parse(&name).with_context(|| format!("--policy {name}"))?;
        if !specs.iter().any(|s: &PolicySpec| s.label() == spec.label()) {
            specs.push(spec);
        }
    }
    Ok(specs)
}

/// Replays every (policy, seed) pair, in parallel; results in the order of the pairs.
pub fn run_all(
    setup: &RunSetup<'_>,
    specs: &[PolicySpec],
    seeds: &[u64],
    progress: bool,
) -> Vec<RunTallies> {
    let pairs: Vec<(&PolicySpec, u64)> = specs
        .iter()
        .flat_map(|s| seeds.iter().map(move |&seed| (s, seed)))
        .collect();
    let done = AtomicUsize::new(0);
    let started = Instant::now();
    pairs
        .par_iter()
        .map(|(spec, seed)| {
            let tallies = replay(setup, spec, *seed);
            if progress {
                let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                eprintln!(
                    "[{n}/{}] {} seed {seed} ({:.1} s)",
                    pairs.len(),
                    spec.label(),
                    started.elapsed().as_secs_f64()
                );
            }
            tallies
        })
        .collect()
}

/// Averages the runs of each policy over seeds, for `window`.
pub fn results(
    specs: &[PolicySpec],
    seeds: &[u64],
    runs: &[RunTallies],
    window: Window,
) -> Vec<PolicyResult> {
    let per_policy: Vec<Vec<Summary>> = runs
        .chunks(seeds.len())
        .map(|chunk| {
            chunk
                .iter()
                .map(|r| match window {
                    Window::Whole => summarize(&r.whole),
                    Window::SecondHalf => summarize(&r.second_half),
                })
                .collect()
        })
        .collect();
    let fixed10 = specs
        .iter()
        .position(|s| s.label() == "fixed-keepalive(10m)")
        .map(|i| mean(&per_policy[i]).wasted_memory_mb_s);
    specs
        .iter()
        .zip(&per_policy)
        .map(|(spec, summaries)| {
            let m = mean(summaries);
            let spread = |f: fn(&Summary) -> f64| {
                summaries
                    .iter()
                    .map(f)
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                        (lo.min(v), hi.max(v))
                    })
            };
            PolicyResult {
                name: spec.label(),
                vs_fixed10_pct: fixed10
                    .filter(|&f| f > 0.0)
                    .map_or(f64::NAN, |f| 100.0 * m.wasted_memory_mb_s / f),
                p75_spread: spread(|s| s.p75_app_cold_start_pct),
                overall_spread: spread(|s| s.overall_cold_start_pct),
                mean: m,
            }
        })
        .collect()
}

fn mean(summaries: &[Summary]) -> Summary {
    let n = summaries.len().max(1) as f64;
    let avg = |f: fn(&Summary) -> f64| summaries.iter().map(f).sum::<f64>() / n;
    Summary {
        p75_app_cold_start_pct: avg(|s| s.p75_app_cold_start_pct),
        p50_app_cold_start_pct: avg(|s| s.p50_app_cold_start_pct),
        mean_app_cold_start_pct: avg(|s| s.mean_app_cold_start_pct),
        overall_cold_start_pct: avg(|s| s.overall_cold_start_pct),
        wasted_memory_mb_s: avg(|s| s.wasted_memory_mb_s),
        invocations: summaries.iter().map(|s| s.invocations).sum::<u64>()
            / summaries.len().max(1) as u64,
        cold_starts: summaries.iter().map(|s| s.cold_starts).sum::<u64>()
            / summaries.len().max(1) as u64,
    }
}
