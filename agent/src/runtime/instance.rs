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

use super::{FunctionRuntime, process};
use crate::{cgroup::InstanceCgroup, shutdown::stopped};

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
    let end = match f
        .env
        .layout
        .create_instance(&f.spec.name, &name, f.spec.memory_mb)
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
    match &end {
        End::Retired | End::Stopped => {
            info!(function = %f.spec.name, instance = %name, reason = end.reason(), "instance stopped")
        }
        other => warn!(function = %f.spec.name, instance = %name, "instance failed: {other:?}"),
    }
    f.instance_ended(seq, &name, &end);
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
        let child = process::spawn(&f.spec, name, cgroup, port)?;
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
