//! Network namespaces for tests that put a hub and its agents on separate "hosts": a named
//! namespace ([`Netns`], made with `ip netns add` and deleted when the last handle drops), and
//! a star of them ([`Star`]): the hub's namespace holds a bridge, and each agent's namespace is
//! joined to it by a veth pair whose link can be cut and restored from either end.
//!
//! Processes enter a namespace with `setns(CLONE_NEWNET)` just before `exec` ([`Netns::command`])
//! rather than through `ip netns exec`, which also remounts `/sys` and would hide the cgroup
//! mounts under `/sys/fs/cgroup` from the agent. The test process itself reaches a server on
//! a namespace's loopback from a thread that has entered it ([`Netns::run`]).
//!
//! Names carry the test process's id and a counter, so runs side by side never meet;
//! namespaces left by a test process that was killed are removed by the next run
//! ([`sweep_stale`]).

use std::{
    fs::File,
    os::fd::{AsRawFd, OwnedFd},
    path::PathBuf,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
};

/// Prefix of every namespace these tests make: `synet-PID-N-ROLE`.
const PREFIX: &str = "synet-";
/// The bridge's subnet in the hub's namespace: the hub is .1, agent `i` is .(10 + i).
const SUBNET: &str = "10.200.0";

/// Runs `ip ARGS`, failing with its output when it fails.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("running ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// A named network namespace; deleted when dropped.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// `ip netns add NAME`, with its loopback up.
    pub fn create(name: &str) -> Self {
        assert!(
            // SAFETY: plain syscall.
            unsafe { libc::geteuid() } == 0,
            "network namespaces need root: run the test as root"
        );
        ip(&["netns", "add", name]);
        let ns = Self { name: name.into() };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n NAME ARGS`.
    pub fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all);
    }

    fn handle(&self) -> OwnedFd {
        let path = PathBuf::from("/var/run/netns").join(&self.name);
        File::open(&path)
            .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()))
            .into()
    }

    /// A command whose process runs in this namespace (it enters it just before `exec`).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        use std::os::unix::process::CommandExt as _;
        let fd = self.handle();
        let mut command = Command::new(program);
        // SAFETY: setns is async-signal-safe; the descriptor lives as long as the command.
        unsafe {
            command.pre_exec(move || {
                if libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        command
    }

    /// Runs `f` on a thread inside this namespace (sockets it opens belong to it).
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let fd = self.handle();
        std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    // SAFETY: plain syscall; a thread may change its own network namespace.
                    let entered = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
                    assert_eq!(entered, 0, "setns: {}", std::io::Error::last_os_error());
                    f()
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Its veth ends go with it; the peers in other namespaces are destroyed with them.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Deletes the namespaces of test processes that no longer run (a run killed before its
/// cleanup); those of live processes are left alone.
pub fn sweep_stale() {
    let Ok(entries) = std::fs::read_dir("/var/run/netns") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !PathBuf::from(format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip").args(["netns", "del", &name]).status();
        }
    }
}

/// Which end of an agent's veth pair a cut takes down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The hub's side: the agent's packets vanish on the wire, its interface stays up.
    Hub,
    /// The agent's side: the agent's own interface goes down (and its route with it).
    Agent,
}

/// The hub's namespace with a bridge, and one namespace per agent joined to it by a veth.
pub struct Star {
    pub hub: Arc<Netns>,
    pub agents: Vec<Arc<Netns>>,
}

impl Star {
    /// Makes the hub's namespace and `agents` agents' namespaces, joined.
    pub fn new(agents: usize) -> Self {
        static RUNS: AtomicU32 = AtomicU32::new(0);
        sweep_stale();
        let tag = format!(
            "{PREFIX}{}-{}",
            std::process::id(),
            RUNS.fetch_add(1, Ordering::Relaxed)
        );
        let hub = Arc::new(Netns::create(&format!("{tag}-hub")));
        hub.ip(&["link", "add", "br0", "type", "bridge"]);
        hub.ip(&["addr", "add", &format!("{SUBNET}.1/24"), "dev", "br0"]);
        hub.ip(&["link", "set", "br0", "up"]);
        let mut star = Self {
            hub,
            agents: Vec::new(),
        };
        for i in 0..agents {
            let ns = Arc::new(Netns::create(&format!("{tag}-a{i}")));
            let (near, far) = (format!("h{i}"), format!("e{i}"));
            star.hub.ip(&[
                "link",
                "add",
                &near,
                "type",
                "veth",
                "peer",
                "name",
                &far,
                "netns",
                ns.name(),
            ]);
            star.hub.ip(&["link", "set", &near, "master", "br0", "up"]);
            ns.ip(&[
                "addr",
                "add",
                &format!("{}/24", star.agent_ip(i)),
                "dev",
                &far,
            ]);
            ns.ip(&["link", "set", &far, "up"]);
            star.agents.push(ns);
        }
        star
    }

    /// The hub's address on the bridge.
    pub fn hub_ip(&self) -> String {
        format!("{SUBNET}.1")
    }

    /// Agent `i`'s address.
    pub fn agent_ip(&self, i: usize) -> String {
        format!("{SUBNET}.{}", 10 + i)
    }

    fn end(&self, i: usize, end: End) -> (&Netns, String) {
        match end {
            End::Hub => (&self.hub, format!("h{i}")),
            End::Agent => (&self.agents[i], format!("e{i}")),
        }
    }

    /// Cuts agent `i`'s link at `end`.
    pub fn cut(&self, i: usize, end: End) {
        let (ns, dev) = self.end(i, end);
        ns.ip(&["link", "set", &dev, "down"]);
    }

    /// Restores agent `i`'s link at `end` (the agent's address and route come back with it).
    pub fn restore(&self, i: usize, end: End) {
        let (ns, dev) = self.end(i, end);
        ns.ip(&["link", "set", &dev, "up"]);
    }
}
