//! `synapse-agent drive`: replays a recorded trace through real gateways, time-compressed.
//!
//! It picks functions of an Azure 2019 trace ([`schedule`]), maps the k-th picked function to
//! the deployed function `PREFIX{k}` on gateway `k mod #gateways` (so requests arrive at every
//! tier), and sends each invocation at its compressed time as a real HTTP request. It counts
//! what the gateways answered — warm or cold (`x-synapse-start`), forwarded to another tier
//! (`x-synapse-forwarded-to`), failed — and prints progress while it runs and a summary at the
//! end, optionally as JSON.

pub mod schedule;

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Request, header};
use hyper_util::rt::TokioIo;
use serde::Serialize;

use self::schedule::{DrivePlan, arrivals, pick};
use crate::trace::load_azure2019;

/// Requests in flight at most; an arrival past it waits (and is counted late).
const MAX_IN_FLIGHT: usize = 512;
/// A request that takes longer is counted failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Arguments of `synapse-agent drive`.
#[derive(Debug, Clone, clap::Args)]
pub struct DriveArgs {
    /// Trace directory in the Azure 2019 layout.
    #[arg(long)]
    pub trace: PathBuf,
    /// Gateway address (host:port), repeatable; picked function k arrives at gateway
    /// k mod the number of gateways.
    #[arg(long = "gateway", required = true)]
    pub gateways: Vec<String>,
    /// Deployed name of picked function k is PREFIX followed by k.
    #[arg(long, default_value = "fn-")]
    pub prefix: String,
    /// Functions to drive.
    #[arg(long, default_value_t = 8)]
    pub functions: usize,
    /// Leave out functions with a minute above this many invocations.
    #[arg(long, default_value_t = 40)]
    pub max_per_minute: u32,
    /// First trace minute driven (index into the trace's columns).
    #[arg(long, default_value_t = 0)]
    pub start_minute: usize,
    /// Trace minutes to drive.
    #[arg(long, default_value_t = 60)]
    pub minutes: usize,
    /// Trace seconds per wall-clock second.
    #[arg(long, default_value_t = 60.0)]
    pub speed: f64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print only the function list (deployed name, trace function, invocations) and exit.
    #[arg(long)]
    pub list: bool,
    /// Write the summary as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Seconds between progress lines on stderr (0: none).
    #[arg(long, default_value_t = 5.0)]
    pub progress: f64,
}

/// What one function's invocations got.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FunctionTally {
    pub name: String,
    pub trace_function: String,
    pub gateway: String,
    pub sent: u64,
    pub ok: u64,
    pub warm: u64,
    pub cold: u64,
    pub forwarded: u64,
    pub failed: u64,
    pub late: u64,
    #[serde(skip)]
    latencies_ms: Vec<f64>,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// The whole drive.
#[derive(Debug, Clone, Serialize)]
pub struct DriveSummary {
    pub trace: String,
    pub seed: u64,
    pub speed: f64,
    pub minutes: usize,
    pub wall_s: f64,
    pub functions: Vec<FunctionTally>,
    pub sent: u64,
    pub ok: u64,
    pub warm: u64,
    pub cold: u64,
    pub forwarded: u64,
    pub failed: u64,
    /// Cold answers over answered invocations, %.
    pub cold_pct: f64,
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

pub fn run(args: DriveArgs) -> Result<()> {
    if !(args.speed.is_finite() && args.speed > 0.0) {
        bail!("--speed must be a positive number, not {}", args.speed);
    }
    let trace = load_azure2019(&args.trace)?;
    let plan = DrivePlan {
        start_minute: args.start_minute,
        minutes: args.minutes,
        speed: args.speed,
        count: args.functions,
        max_per_minute: args.max_per_minute,
        seed: args.seed,
    };
    let picked = pick(&trace, &plan);
    if picked.is_empty() {
        bail!(
            "{}: no function fits (at least 2 invocations in the window, at most {} a minute)",
            args.trace.display(),
            args.max_per_minute
        );
    }
    let tallies: Vec<FunctionTally> = picked
        .iter()
        .enumerate()
        .map(|(k, p)| FunctionTally {
            name: format!("{}{k}", args.prefix),
            trace_function: trace.functions[p.index].function.clone(),
            gateway: args.gateways[k % args.gateways.len()].clone(),
            ..Default::default()
        })
        .collect();
    if args.list {
        for (t, p) in tallies.iter().zip(&picked) {
            let f = &trace.functions[p.index];
            println!(
                "{}\t{}\t{}\t{:.0}\t{:.0}",
                t.name, f.function, p.invocations, f.duration_ms, f.memory_mb
            );
        }
        return Ok(());
    }
    let schedule = arrivals(&trace, &picked, &plan);
    let summary = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(drive(&args, tallies, schedule, trace.name.clone()))?;
    print_summary(&summary);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&summary)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// What one request got.
enum Outcome {
    Answered { cold: bool, forwarded: bool },
    Failed,
}

async fn invoke(gateway: &str, function: &str) -> Outcome {
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(gateway).await.ok()?;
        let _ = stream.set_nodelay(true);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .ok()?;
        tokio::spawn(conn);
        let request = Request::post(format!("/v1/functions/{function}/invoke"))
            .header(header::HOST, gateway)
            .header(header::CONNECTION, "close")
            .body(Full::new(Bytes::from_static(b"{\"drive\":true}")))
            .ok()?;
        let response = sender.send_request(request).await.ok()?;
        let status = response.status();
        let cold = response
            .headers()
            .get("x-synapse-start")
            .is_some_and(|v| v.as_bytes() == b"cold");
        let forwarded = response.headers().contains_key("x-synapse-forwarded-to");
        response.into_body().collect().await.ok()?;
        status
            .is_success()
            .then_some(Outcome::Answered { cold, forwarded })
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
        Ok(Some(outcome)) => outcome,
        _ => Outcome::Failed,
    }
}

async fn drive(
    args: &DriveArgs,
    tallies: Vec<FunctionTally>,
    schedule: Vec<schedule::Arrival>,
    trace: String,
) -> Result<DriveSummary> {
    let tallies = Arc::new(Mutex::new(tallies));
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    let start = Instant::now();
    let total = schedule.len();
    let mut next_progress = args.progress;
    let mut requests = tokio::task::JoinSet::new();
    for (sent, arrival) in schedule.into_iter().enumerate() {
        let due = start + Duration::from_secs_f64(arrival.at_s);
        tokio::time::sleep_until(due.into()).await;
        while args.progress > 0.0 && start.elapsed().as_secs_f64() >= next_progress {
            progress(&tallies, start, sent, total, args.speed);
            next_progress += args.progress;
        }
        let permit = slots.clone().acquire_owned().await?;
        let late = due.elapsed() > Duration::from_millis(100);
        let (gateway, name) = {
            let mut t = lock(&tallies);
            let tally = &mut t[arrival.function];
            tally.sent += 1;
            tally.late += u64::from(late);
            (tally.gateway.clone(), tally.name.clone())
        };
        let tallies = tallies.clone();
        requests.spawn(async move {
            let begun = Instant::now();
            let outcome = invoke(&gateway, &name).await;
            let ms = begun.elapsed().as_secs_f64() * 1e3;
            let mut t = lock(&tallies);
            let tally = &mut t[arrival.function];
            match outcome {
                Outcome::Answered { cold, forwarded } => {
                    tally.ok += 1;
                    tally.cold += u64::from(cold);
                    tally.warm += u64::from(!cold);
                    tally.forwarded += u64::from(forwarded);
                    tally.latencies_ms.push(ms);
                }
                Outcome::Failed => tally.failed += 1,
            }
            drop(permit);
        });
        while requests.try_join_next().is_some() {}
    }
    while requests.join_next().await.is_some() {}
    let mut functions = lock(&tallies).clone();
    for f in &mut functions {
        f.latencies_ms.sort_by(f64::total_cmp);
        f.p50_ms = percentile(&f.latencies_ms, 0.5);
        f.p99_ms = percentile(&f.latencies_ms, 0.99);
    }
    let sum = |get: fn(&FunctionTally) -> u64| functions.iter().map(get).sum::<u64>();
    let (ok, cold) = (sum(|f| f.ok), sum(|f| f.cold));
    Ok(DriveSummary {
        trace,
        seed: args.seed,
        speed: args.speed,
        minutes: args.minutes,
        wall_s: start.elapsed().as_secs_f64(),
        sent: sum(|f| f.sent),
        ok,
        warm: sum(|f| f.warm),
        cold,
        forwarded: sum(|f| f.forwarded),
        failed: sum(|f| f.failed),
        cold_pct: if ok == 0 {
            0.0
        } else {
            cold as f64 * 100.0 / ok as f64
        },
        functions,
    })
}

fn lock(t: &Mutex<Vec<FunctionTally>>) -> std::sync::MutexGuard<'_, Vec<FunctionTally>> {
    t.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn progress(
    tallies: &Mutex<Vec<FunctionTally>>,
    start: Instant,
    sent: usize,
    total: usize,
    speed: f64,
) {
    let t = lock(tallies);
    let sum = |get: fn(&FunctionTally) -> u64| t.iter().map(get).sum::<u64>();
    let elapsed = start.elapsed().as_secs_f64();
    eprintln!(
        "drive: +{elapsed:.0}s (trace minute {:.0}) sent {sent}/{total}: {} warm, {} cold, {} forwarded, {} failed",
        elapsed * speed / 60.0,
        sum(|f| f.warm),
        sum(|f| f.cold),
        sum(|f| f.forwarded),
        sum(|f| f.failed),
    );
}

fn print_summary(s: &DriveSummary) {
    println!(
        "{:<8} {:<18} {:<16} {:>6} {:>6} {:>6} {:>6} {:>6} {:>8} {:>8}",
        "function",
        "trace function",
        "gateway",
        "sent",
        "warm",
        "cold",
        "fwd",
        "failed",
        "p50 ms",
        "p99 ms"
    );
    for f in &s.functions {
        println!(
            "{:<8} {:<18} {:<16} {:>6} {:>6} {:>6} {:>6} {:>6} {:>8.1} {:>8.1}",
            f.name,
            f.trace_function.get(..16).unwrap_or(&f.trace_function),
            f.gateway,
            f.sent,
            f.warm,
            f.cold,
            f.forwarded,
            f.failed,
            f.p50_ms,
            f.p99_ms
        );
    }
    println!(
        "total: {} sent, {} answered ({} warm, {} cold = {:.1} % cold), {} forwarded, {} failed, in {:.0} s",
        s.sent, s.ok, s.warm, s.cold, s.cold_pct, s.forwarded, s.failed, s.wall_s
    );
}
