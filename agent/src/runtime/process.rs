//! Starting an instance's process inside its cgroup, as its function's unprivileged account:
//! the cgroup's `cgroup.procs` files are opened before the fork and the child writes its own
//! pid into them before it executes, so the kernel sees the exec already inside the cgroup.
//!
//! Between fork and exec the child, still root, joins its cgroups and empties its capability
//! bounding set; marks every descriptor it inherited from the agent close-on-exec (whatever
//! the agent was given by its own parent stays out of the instance); drops its supplementary
//! groups, then takes the function's gid, then its uid (real, effective and saved, so there
//! is no way back to root); changes to the function's `working_dir` as that user (a folder it
//! cannot enter fails the start); and sets `no_new_privs`, so that no set-uid program or file
//! capability gives it anything back. Everything it needs is computed before the fork: the
//! child allocates nothing.

use std::{
    ffi::CString,
    os::{
        fd::{AsRawFd as _, OwnedFd},
        unix::ffi::OsStrExt as _,
    },
    process::Stdio,
};

use anyhow::{Context as _, Result};
use tokio::process::Command;

use crate::{
    cgroup::InstanceCgroup,
    config::{Account, FunctionSpec},
};

/// Variables of the agent's environment an instance does not inherit.
const AGENT_ONLY_ENV: [&str; 9] = [
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "CREDENTIALS_DIRECTORY",
    "INVOCATION_ID",
    "SYNAPSE_AGENT_CONFIG",
];

pub fn spawn(
    spec: &FunctionSpec,
    name: &str,
    cgroup: &InstanceCgroup,
    port: u16,
    account: Account,
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
    let working_dir = spec
        .working_dir
        .as_ref()
        .map(|d| CString::new(d.as_os_str().as_bytes()))
        .transpose()
        .context("working_dir holds a NUL byte")?;
    let Account { uid, gid } = account;
    let mut cmd = Command::new(command);
    // What the service manager told the agent is the agent's alone: an instance must not
    // notify systemd, take its sockets or credentials, or learn where the agent's
    // configuration lives.
    for agents_own in AGENT_ONLY_ENV {
        cmd.env_remove(agents_own);
    }
    cmd.args(&spec.args)
        .envs(&spec.env)
        .env("SYNAPSE_LISTEN", format!("127.0.0.1:{port}"))
        .env("PORT", port.to_string())
        .env("SYNAPSE_FUNCTION", &spec.name)
        .env("SYNAPSE_INSTANCE", name)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    // SAFETY: the closure only makes async-signal-safe calls (getpid, write, prctl,
    // close_range or fcntl, setgroups, setresgid, setresuid, chdir) on values computed before
    // the fork, and touches no allocator.
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
            close_on_exec_from(3);
            let ok = |rc: libc::c_int| {
                if rc == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            };
            ok(libc::setgroups(0, std::ptr::null()))?;
            ok(libc::setresgid(gid, gid, gid))?;
            ok(libc::setresuid(uid, uid, uid))?;
            if let Some(dir) = &working_dir {
                ok(libc::chdir(dir.as_ptr()))?;
            }
            ok(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
        });
    }
    let child = cmd.spawn().with_context(|| {
        format!(
            "starting {} for function {} as uid {uid} gid {gid} (its command and working_dir \
             must be open to that user)",
            command.display(),
            spec.name
        )
    })?;
    drop(procs);
    Ok(child)
}

/// Marks every descriptor from `first` on close-on-exec. The agent's own are already (Rust
/// opens everything so); this is for those it inherited. Async-signal-safe: close_range(2),
/// or fcntl(2) on each possible descriptor on kernels before 5.11.
fn close_on_exec_from(first: u32) {
    // SAFETY: plain syscall with integer arguments.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if rc == 0 {
        return;
    }
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    let max = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        limit.rlim_cur.min(1 << 20) as i32
    } else {
        1 << 16
    };
    for fd in first as i32..max {
        // SAFETY: plain syscalls on a descriptor number; EBADF for those not open.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    }
}

/// Empties the bounding and ambient capability sets of the process about to exec an instance,
/// before it leaves root: so that nothing it executes can gain any capability back (the
/// ambient set would survive the change of uid). Needs CAP_SETPCAP (the systemd unit grants it
/// for this); without it the sets stay as they are and [`missing_capabilities`] says so
/// once at start. Async-signal-safe: prctl only (called between fork and exec).
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

/// Capabilities the agent lacks for its instances, by name: CAP_SETUID and CAP_SETGID to
/// start them as their users, CAP_KILL to stop them (they no longer share its uid), and
/// CAP_SETPCAP to empty their bounding set (see [`drop_capabilities`]; without it they still
/// run with no capability, as non-root under `no_new_privs`).
pub fn missing_capabilities() -> Vec<&'static str> {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return Vec::new();
    };
    let effective = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    [
        (5, "CAP_KILL"),
        (6, "CAP_SETGID"),
        (7, "CAP_SETUID"),
        (8, "CAP_SETPCAP"),
    ]
    .into_iter()
    .filter(|(bit, _)| effective & (1 << bit) == 0)
    .map(|(_, name)| name)
    .collect()
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
