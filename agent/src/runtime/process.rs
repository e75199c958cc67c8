//! Starting an instance's process inside its cgroup: the cgroup's `cgroup.procs` files are
//! opened before the fork and the child writes its own pid into them before it executes, so
//! the kernel sees the exec already inside the cgroup.

use std::{
    os::fd::{AsRawFd as _, OwnedFd},
    process::Stdio,
};

use anyhow::{Context as _, Result};
use tokio::process::Command;

use crate::{cgroup::InstanceCgroup, config::FunctionSpec};

pub fn spawn(
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
    let command = spec
        .command
        .as_ref()
        .with_context(|| format!("function {} has no command", spec.name))?;
    let mut cmd = Command::new(command);
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
    // SAFETY: the closure only makes async-signal-safe calls (getpid, write, prctl) on fds
    // opened before the fork, and touches no allocator.
    unsafe {
        cmd.pre_exec(move || {
            let mut buf = [0u8; 12];
            let len = format_pid(libc::getpid() as u32, &mut buf);
            for &fd in &fds {
                if libc::write(fd, buf.as_ptr().cast(), len) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            drop_capabilities();
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {} for function {}", command.display(), spec.name))?;
    drop(procs);
    Ok(child)
}

/// Empties the bounding and ambient capability sets of the process about to exec an instance:
/// the agent runs as root, and a root process gains at exec every capability left in its
/// bounding set, so without this an instance would hold the agent's own (CAP_BPF and the
/// rest). Needs CAP_SETPCAP (the systemd unit grants it for this); without it the sets stay
/// as they are and [`instances_keep_capabilities`] says so once at start. Async-signal-safe:
/// prctl only (called between fork and exec).
fn drop_capabilities() {
    // Beyond the kernel's last capability prctl answers EINVAL: harmless.
    for cap in 0..64 {
        // SAFETY: plain syscall with integer arguments.
        unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) };
    }
    // SAFETY: as above.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    };
}

/// Whether instances will keep capabilities: the agent has a non-empty bounding set but no
/// CAP_SETPCAP to empty it for them (see [`drop_capabilities`]).
pub fn instances_keep_capabilities() -> bool {
    const CAP_SETPCAP: u64 = 1 << 8;
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    let mask = |field: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or(0)
    };
    mask("CapBnd:") != 0 && mask("CapEff:") & CAP_SETPCAP == 0
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

pub fn free_port() -> Result<u16> {
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
