//! Runs the configured functions as processes, each instance in its own cgroup registered with
//! the eBPF filter before the process executes, so the kernel sees its exec, listen and
//! accepts. Instances are restarted by their restart policy (with backoff when they crash
//! fast) and stopped with a grace period on shutdown.

use std::{
    os::fd::{AsRawFd as _, OwnedFd},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use tokio::{process::Command, sync::watch};
use tracing::{info, warn};

use crate::{
    cgroup::{CgroupLayout, InstanceCgroup},
    config::{FunctionSpec, Restart},
    telemetry::ebpf::Filter,
};

/// How long an instance gets between SIGTERM and SIGKILL when the agent stops.
pub const STOP_GRACE: Duration = Duration::from_secs(5);
const MIN_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// An instance that ran at least this long before exiting resets the restart backoff.
const HEALTHY_RUN: Duration = Duration::from_secs(10);

/// One instance slot of a function: starts an instance, waits for it, restarts it.
pub struct InstanceSlot {
    pub spec: FunctionSpec,
    pub function_id: u32,
    pub index: u32,
    pub layout: CgroupLayout,
    pub filter: Filter,
}

impl InstanceSlot {
    /// Keeps the slot's instance running until `shutdown` turns true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut generation = 0u64;
        let mut backoff = MIN_BACKOFF;
        loop {
            let stopping = *shutdown.borrow();
            if stopping {
                return;
            }
            let started = Instant::now();
            let outcome = self.run_once(generation, &mut shutdown).await;
            generation += 1;
            let success = match outcome {
                Ok(Some(success)) => success,
                Ok(None) => return, // stopped by shutdown
                Err(e) => {
                    warn!(function = %self.spec.name, "instance could not start: {e:#}");
                    false
                }
            };
            let again = match self.spec.restart {
                Restart::Never => false,
                Restart::OnFailure => !success,
                Restart::Always => true,
            };
            if !again {
                return;
            }
            backoff = if started.elapsed() >= HEALTHY_RUN {
                MIN_BACKOFF
            } else {
                (backoff * 2).min(MAX_BACKOFF)
            };
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = crate::shutdown::stopped(&mut shutdown) => return,
            }
        }
    }

    /// Runs one instance to its end. `Ok(None)` when it was stopped by shutdown, else whether
    /// it exited successfully.
    async fn run_once(
        &self,
        generation: u64,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Option<bool>> {
        let spec = &self.spec;
        let name = format!("i{}-{}", self.index, generation);
        let cgroup = self
            .layout
            .create_instance(&spec.name, &name, spec.memory_mb)?;
        let result = self.supervise(&cgroup, &name, shutdown).await;
        self.filter.unwatch(cgroup.id);
        if let Err(e) = cgroup.remove() {
            warn!(function = %spec.name, instance = %name, "removing its cgroup: {e:#}");
        }
        result
    }

    async fn supervise(
        &self,
        cgroup: &InstanceCgroup,
        name: &str,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Option<bool>> {
        let spec = &self.spec;
        self.filter.watch(cgroup.id, self.function_id)?;
        let port = match spec.port {
            Some(p) => p + self.index as u16,
            None => free_port()?,
        };
        let mut child = spawn(spec, name, cgroup, port)?;
        let pid = child.id().unwrap_or(0);
        info!(function = %spec.name, instance = %name, pid, port, cgroup_id = cgroup.id, "instance started");
        tokio::select! {
            status = child.wait() => {
                let status = status.context("waiting for the instance")?;
                if cgroup.oom_killed() {
                    warn!(function = %spec.name, instance = %name, "instance killed: over its memory limit of {} MiB", spec.memory_mb.unwrap_or(0));
                } else if status.success() {
                    info!(function = %spec.name, instance = %name, "instance exited");
                } else {
                    warn!(function = %spec.name, instance = %name, %status, "instance failed");
                }
                Ok(Some(status.success()))
            }
            _ = crate::shutdown::stopped(shutdown) => {
                // SAFETY: plain syscall; the pid is our own child, not yet reaped.
                unsafe { libc::kill(pid as i32, libc::SIGTERM) };
                if tokio::time::timeout(STOP_GRACE, child.wait()).await.is_err() {
                    warn!(function = %spec.name, instance = %name, "instance ignored SIGTERM for {STOP_GRACE:?}; killing it");
                    let _ = child.kill().await;
                }
                Ok(None)
            }
        }
    }
}

fn spawn(
    spec: &FunctionSpec,
    name: &str,
    cgroup: &InstanceCgroup,
    port: u16,
) -> Result<tokio::process::Child> {
    let procs: Vec<OwnedFd> = cgroup
        .procs_files()
        .iter()
        .map(|p| {
            std::fs::OpenOptions::new()
                .write(true)
                .open(p)
                .map(OwnedFd::from)
                .with_context(|| format!("opening {}", p.display()))
        })
        .collect::<Result<_>>()?;
    let fds: Vec<i32> = procs.iter().map(|f| f.as_raw_fd()).collect();
    let mut cmd = Command::new(&spec.command);
    cmd.args(&spec.args)
        .envs(&spec.env)
        .env("SYNAPSE_LISTEN", format!("127.0.0.1:{port}"))
        .env("PORT", port.to_string())
        .env("SYNAPSE_FUNCTION", &spec.name)
        .env("SYNAPSE_INSTANCE", name)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    if let Some(dir) = &spec.working_dir {
        cmd.current_dir(dir);
    }
    // SAFETY: the closure only makes async-signal-safe calls (getpid, write) on fds opened
    // before the fork, and touches no allocator.
    unsafe {
        cmd.pre_exec(move || {
            let mut buf = [0u8; 12];
            let len = format_pid(libc::getpid() as u32, &mut buf);
            for &fd in &fds {
                if libc::write(fd, buf.as_ptr().cast(), len) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child = cmd.spawn().with_context(|| {
        format!(
            "starting {} for function {}",
            spec.command.display(),
            spec.name
        )
    })?;
    drop(procs);
    Ok(child)
}

/// Writes `pid` in decimal into `buf`, returns the length. No allocation (used after fork).
fn format_pid(mut pid: u32, buf: &mut [u8; 12]) -> usize {
    let mut tmp = [0u8; 10];
    let mut n = 0;
    loop {
        tmp[n] = b'0' + (pid % 10) as u8;
        n += 1;
        pid /= 10;
        if pid == 0 {
            break;
        }
    }
    for i in 0..n {
        buf[i] = tmp[n - 1 - i];
    }
    n
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pids_are_written_in_decimal() {
        let mut b = [0u8; 12];
        let n = format_pid(4_194_304, &mut b);
        assert_eq!(&b[..n], b"4194304");
        let n = format_pid(0, &mut b);
        assert_eq!(&b[..n], b"0");
    }
}
