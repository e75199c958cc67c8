//! The life of one instance, in its own task: cgroup, process, readiness from the kernel,
//! service, and the end — retired by the pool, crashed, killed over its memory limit, or
//! never ready. Whatever happens, the process is reaped and its cgroup removed.

use std::{
    net::SocketAddr,
    os::unix::process::ExitStatusExt as _,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Result;
use tokio::sync::{oneshot, watch};
use tracing::{info, warn};

use super::{FunctionRuntime, onnx, process};
use crate::{cgroup::InstanceCgroup, config::FunctionKind, shutdown::stopped};

/// How long an instance gets between SIGTERM and SIGKILL when it is retired or the agent stops.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// How an instance ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    Retired,
    Stopped,
    Exited(String),
    Crashed(String),
    OutOfMemory,
    NeverReady(String),
    StartFailed(String),
}

impl End {
    /// Label of `synapse_instance_ends_total{reason}`.
    pub fn reason(&self) -> &'static str {
        match self {
            End::Retired => "retired",
            End::Stopped => "stopped",
            End::Exited(_) => "exited",
            End::Crashed(_) => "crashed",
            End::OutOfMemory => "out_of_memory",
            End::NeverReady(_) => "never_ready",
            End::StartFailed(_) => "start_failed",
        }
    }

    pub fn is_failure(&self) -> bool {
        !matches!(self, End::Retired | End::Stopped)
    }
}

/// Runs instance `seq` of `f` to its end and removes it from the pool.
pub async fn run(
    f: Arc<FunctionRuntime>,
    seq: u64,
    name: String,
    retire: oneshot::Receiver<()>,
    mut shutdown: watch::Receiver<bool>,
) {
    if f.spec.kind == FunctionKind::Onnx {
        let end = live_onnx(&f, seq, retire, &mut shutdown).await;
        report(&f, &name, &end);
        f.instance_ended(seq, &name, &end);
        return;
    }
    let end = match f
        .env
        .layout
        .create_instance(&f.spec.name, &name, &f.spec.limits())
    {
        Ok(cgroup) => {
            let end = live(&f, seq, &name, &cgroup, retire, &mut shutdown).await;
            f.env.filter.unwatch(cgroup.id);
            f.env.readiness.forget(cgroup.id);
            if let Err(e) = cgroup.remove() {
                warn!(function = %f.spec.name, instance = %name, "removing its cgroup: {e:#}");
            }
            end
        }
        Err(e) => End::StartFailed(format!("{e:#}")),
    };
    report(&f, &name, &end);
    f.instance_ended(seq, &name, &end);
}

fn report(f: &FunctionRuntime, name: &str, end: &End) {
    match end {
        End::Retired | End::Stopped => {
            info!(function = %f.spec.name, instance = %name, reason = end.reason(), "instance stopped")
        }
        other => warn!(function = %f.spec.name, instance = %name, "instance failed: {other:?}"),
    }
}

/// An ONNX instance lives inside the agent: its cold start is loading and optimising the
/// model, measured here (no process to watch in the kernel).
async fn live_onnx(
    f: &Arc<FunctionRuntime>,
    seq: u64,
    mut retire: oneshot::Receiver<()>,
    shutdown: &mut watch::Receiver<bool>,
) -> End {
    let started = tokio::select! {
        r = tokio::time::timeout(f.spec.ready_timeout, onnx::start(&f.spec)) => r,
        _ = &mut retire => return End::Retired,
        _ = stopped(shutdown) => return End::Stopped,
    };
    let instance = match started {
        Ok(Ok(i)) => i,
        Ok(Err(e)) => return End::StartFailed(format!("{e:#}")),
        Err(_) => {
            return End::NeverReady(format!(
                "model not loaded within ready_timeout ({})",
                humantime::format_duration(f.spec.ready_timeout)
            ));
        }
    };
    let l = crate::metrics::Metrics::label(&f.spec.name);
    f.env.metrics.cold_starts.get_or_create(&l).inc();
    f.env
        .metrics
        .cold_start_seconds
        .get_or_create(&l)
        .observe(instance.load_time.as_secs_f64());
    info!(function = %f.spec.name, addr = %instance.addr, load_ms = instance.load_time.as_millis() as u64, "model loaded");
    f.instance_ready(seq, instance.addr, Instant::now());
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let serving = tokio::spawn(instance.serve(async move {
        let _ = stop_rx.await;
    }));
    let end = tokio::select! {
        _ = &mut retire => End::Retired,
        _ = stopped(shutdown) => End::Stopped,
    };
    let _ = stop_tx.send(());
    let _ = serving.await;
    end
}

async fn live(
    f: &Arc<FunctionRuntime>,
    seq: u64,
    name: &str,
    cgroup: &InstanceCgroup,
    mut retire: oneshot::Receiver<()>,
    shutdown: &mut watch::Receiver<bool>,
) -> End {
    let ready = f.env.readiness.expect(cgroup.id);
    if let Err(e) = f.env.filter.watch(cgroup.id, f.id) {
        return End::StartFailed(format!("{e:#}"));
    }
    let spawned: Result<_> = process::free_port().and_then(|port| {
        let account = f
            .env
            .instances
            .account(f.spec.user.as_deref(), f.id)
            .map_err(|e| anyhow::anyhow!("function {}: {e}", f.spec.name))?;
        let child = process::spawn(&f.spec, name, cgroup, port, account)?;
        Ok((child, SocketAddr::from(([127, 0, 0, 1], port))))
    });
    let (mut child, addr) = match spawned {
        Ok(c) => c,
        Err(e) => return End::StartFailed(format!("{e:#}")),
    };
    let pid = child.id().unwrap_or(0);
    info!(function = %f.spec.name, instance = %name, pid, %addr, cgroup_id = cgroup.id, "instance starting");
    let ended = |status: std::process::ExitStatus| {
        if cgroup.oom_killed() {
            End::OutOfMemory
        } else if status.success() {
            End::Exited(status.to_string())
        } else {
            End::Crashed(status.to_string())
        }
    };
    // Until the kernel sees it listen.
    tokio::select! {
        r = ready => {
            if r.is_err() {
                return End::StartFailed("readiness registration lost".into());
            }
            f.instance_ready(seq, addr, Instant::now());
        }
        status = child.wait() => {
            let why = match status {
                Ok(s) => match ended(s) {
                    End::OutOfMemory => return End::OutOfMemory,
                    _ => format!("exited ({s}) before it listened"),
                },
                Err(e) => format!("could not be waited for: {e}"),
            };
            return End::NeverReady(why);
        }
        _ = tokio::time::sleep(f.spec.ready_timeout) => {
            let _ = stop(&mut child, pid).await;
            return End::NeverReady(format!(
                "did not listen within ready_timeout ({})",
                humantime::format_duration(f.spec.ready_timeout)
            ));
        }
        _ = &mut retire => { let _ = stop(&mut child, pid).await; return End::Retired; }
        _ = stopped(shutdown) => { let _ = stop(&mut child, pid).await; return End::Stopped; }
    }
    // Serving. A retirement may be asked because the instance just died (the gateway saw its
    // connection break): then how it died is what counts.
    let (status, asked) = tokio::select! {
        status = child.wait() => (status, None),
        _ = &mut retire => (stop(&mut child, pid).await, Some(End::Retired)),
        _ = stopped(shutdown) => (stop(&mut child, pid).await, Some(End::Stopped)),
    };
    match (status, asked) {
        (Err(e), _) => End::Crashed(format!("could not be waited for: {e}")),
        (Ok(s), Some(asked))
            if s.success()
                || s.signal() == Some(libc::SIGTERM)
                || s.signal() == Some(libc::SIGKILL) && !cgroup.oom_killed() =>
        {
            asked
        }
        (Ok(s), _) => ended(s),
    }
}

/// SIGTERM, a grace period, then SIGKILL; always reaps. Returns how the process ended.
async fn stop(
    child: &mut tokio::process::Child,
    pid: u32,
) -> std::io::Result<std::process::ExitStatus> {
    // SAFETY: plain syscall; the pid is our own child, not yet reaped.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    match tokio::time::timeout(STOP_GRACE, child.wait()).await {
        Ok(status) => status,
        Err(_) => {
            warn!(
                pid,
                "instance ignored SIGTERM for {STOP_GRACE:?}; killing it"
            );
            let _ = child.kill().await;
            child.wait().await
        }
    }
}
