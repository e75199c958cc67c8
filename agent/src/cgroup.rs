//! Cgroups of function instances.
//!
//! The agent reads the mount table to find the cgroup v2 hierarchy (wherever it is mounted:
//! `/sys/fs/cgroup` on pure v2 hosts, `/sys/fs/cgroup/unified` on hybrid ones) and, for each
//! of the memory, pids and cpu controllers v2 does not offer, its v1 hierarchy. Each instance
//! gets its own cgroup `<subtree>/<function>/<instance>` (in v2, and in each v1 hierarchy
//! whose controller limits it, `limits.rs`); its v2 id (the directory's inode) is what the
//! eBPF programs see from `bpf_get_current_cgroup_id()`.
//!
//! Under systemd with `Delegate=yes` the agent's own cgroup is delegated to it (systemd marks
//! it with the `trusted.delegate` extended attribute): the agent then moves itself into a leaf
//! `agent/` of that cgroup — cgroup v2 lets only leaves hold processes once controllers are
//! enabled below — and keeps `<subtree>` under its own cgroup instead of at the root, so its
//! instances are accounted to, and stopped with, its unit.

use std::{
    fs,
    io::Write as _,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, Result};

mod limits;
pub use limits::{CPU_PERIOD_US, Limits};

/// One line of `/proc/self/mountinfo`, the fields the agent uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub mount_point: PathBuf,
    pub fs_type: String,
    pub super_options: String,
}

/// Parses `/proc/self/mountinfo` text (see proc(5)).
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mount_point = left.split(' ').nth(4)?;
            let mut right = right.split(' ');
            let fs_type = right.next()?.to_string();
            let _source = right.next()?;
            let super_options = right.next().unwrap_or("").to_string();
            Some(Mount {
                mount_point: PathBuf::from(unescape(mount_point)),
                fs_type,
                super_options,
            })
        })
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 4 <= bytes.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8)
        {
            out.push(v as char);
            i += 4;
            continue;
        }
        out.push(bytes[i] as char);
        i += 1;
    }
    out
}

/// Where the cgroup hierarchies of this host are.
#[derive(Debug, Clone)]
pub struct CgroupLayout {
    /// Mount point of cgroup v2.
    pub v2: PathBuf,
    /// The cgroup the agent's folder is in, relative to `v2`: empty for the root, or the
    /// agent's own cgroup when it is delegated ([`CgroupLayout::adopt_delegation`]).
    pub v2_parent: PathBuf,
    /// Mount point of the v1 memory controller, used when v2 has no memory controller.
    pub v1_memory: Option<PathBuf>,
    /// Whether the v2 hierarchy offers the memory controller.
    pub v2_memory: bool,
    /// The same for the pids controller (`pids.max`) ...
    pub v1_pids: Option<PathBuf>,
    pub v2_pids: bool,
    /// ... and for the cpu controller (`cpu.max`, `cpu.cfs_quota_us` on v1).
    pub v1_cpu: Option<PathBuf>,
    pub v2_cpu: bool,
    /// The agent's folder name under each hierarchy.
    pub subtree: String,
}

impl CgroupLayout {
    /// Finds the hierarchies in the mount table (or uses `v2_mount` when configured).
    pub fn detect(v2_mount: Option<&Path>, subtree: &str) -> Result<Self> {
        let text =
            fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
        let mounts = parse_mountinfo(&text);
        Self::from_mounts(&mounts, v2_mount, subtree)
    }

    pub fn from_mounts(mounts: &[Mount], v2_mount: Option<&Path>, subtree: &str) -> Result<Self> {
        let v2 = match v2_mount {
            Some(p) => p.to_path_buf(),
            None => mounts
                .iter()
                .filter(|m| m.fs_type == "cgroup2")
                .map(|m| m.mount_point.clone())
                // Prefer the conventional places when cgroup2 is mounted more than once.
                .min_by_key(|p| match p.to_str() {
                    Some("/sys/fs/cgroup") => 0,
                    Some("/sys/fs/cgroup/unified") => 1,
                    _ => 2,
                })
                .context(
                    "no cgroup v2 hierarchy in the mount table: the agent needs cgroup v2 \
                     (mount it with `mount -t cgroup2 none /sys/fs/cgroup/unified`)",
                )?,
        };
        let v1 = |controller: &str| {
            mounts
                .iter()
                .find(|m| {
                    m.fs_type == "cgroup" && m.super_options.split(',').any(|o| o == controller)
                })
                .map(|m| m.mount_point.clone())
        };
        let mut layout = Self {
            v2_parent: PathBuf::new(),
            v1_memory: v1("memory"),
            v2_memory: false,
            v1_pids: v1("pids"),
            v2_pids: false,
            v1_cpu: v1("cpu"),
            v2_cpu: false,
            subtree: subtree.to_string(),
            v2: v2.clone(),
        };
        layout.read_v2_controllers(&v2);
        Ok(layout)
    }

    /// Reads which controllers the v2 cgroup `dir` (the parent of the agent's folder) offers.
    fn read_v2_controllers(&mut self, dir: &Path) {
        let offered = fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
        let has = |c: &str| offered.split_whitespace().any(|o| o == c);
        (self.v2_memory, self.v2_pids, self.v2_cpu) = (has("memory"), has("pids"), has("cpu"));
    }

    /// When the agent's own v2 cgroup is delegated to it, moves the agent into its leaf
    /// `agent/` and puts the agent's folder under its own cgroup; returns that cgroup.
    /// `None` (nothing changed) when the agent runs in the root cgroup or in one not delegated.
    pub fn adopt_delegation(&mut self) -> Result<Option<PathBuf>> {
        let text = fs::read_to_string("/proc/self/cgroup").context("reading /proc/self/cgroup")?;
        let Some(own) = own_v2_cgroup(&text) else {
            return Ok(None);
        };
        let dir = self.v2.join(&own);
        if own.as_os_str().is_empty() || !is_delegated(&dir) {
            return Ok(None);
        }
        let leaf = dir.join("agent");
        fs::create_dir_all(&leaf).with_context(|| format!("creating {}", leaf.display()))?;
        write_file(&leaf.join("cgroup.procs"), &std::process::id().to_string())?;
        self.read_v2_controllers(&dir);
        self.v2_parent = own;
        Ok(Some(dir))
    }

    /// The agent's v2 folder.
    pub fn v2_root(&self) -> PathBuf {
        self.v2.join(&self.v2_parent).join(&self.subtree)
    }

    /// The agent's folders in the v1 hierarchies it uses.
    fn v1_roots(&self) -> impl Iterator<Item = PathBuf> + '_ {
        [&self.v1_memory, &self.v1_pids, &self.v1_cpu]
            .into_iter()
            .flatten()
            .map(|m| m.join(&self.subtree))
    }

    /// Creates the cgroup of one instance with its limits (see [`Limits`]); on an error
    /// nothing of it is left.
    pub fn create_instance(
        &self,
        function: &str,
        instance: &str,
        limits: &Limits,
    ) -> Result<InstanceCgroup> {
        let v2 = self.v2_root().join(function).join(instance);
        fs::create_dir_all(&v2).with_context(|| format!("creating cgroup {}", v2.display()))?;
        let mut cg = InstanceCgroup {
            id: 0,
            v2,
            v1_memory: None,
            v1_pids: None,
            v1_cpu: None,
        };
        let applied = fs::metadata(&cg.v2)
            .with_context(|| format!("reading cgroup {}", cg.v2.display()))
            .and_then(|m| {
                cg.id = m.ino();
                self.apply_limits(&mut cg, function, instance, limits)
            });
        match applied {
            Ok(()) => Ok(cg),
            Err(e) => {
                let _ = cg.remove();
                Err(e)
            }
        }
    }

    /// Removes every cgroup under the agent's folders, killing what still runs in them:
    /// the leftovers of an agent that did not stop cleanly.
    pub fn remove_all(&self) -> Result<usize> {
        let mut removed = 0;
        for root in std::iter::once(self.v2_root()).chain(self.v1_roots()) {
            if root.exists() {
                removed += remove_tree(&root)?;
            }
        }
        Ok(removed)
    }
}

/// The cgroup(s) of one instance.
#[derive(Debug, Clone)]
pub struct InstanceCgroup {
    /// cgroup v2 id, the key of the eBPF filter map.
    pub id: u64,
    pub v2: PathBuf,
    /// Its cgroups in the v1 hierarchies of the controllers that limit it, when v2 has not.
    pub v1_memory: Option<PathBuf>,
    pub v1_pids: Option<PathBuf>,
    pub v1_cpu: Option<PathBuf>,
}

impl InstanceCgroup {
    /// `cgroup.procs` files a new process must join, in order.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs().map(|d| d.join("cgroup.procs")).collect()
    }

    /// Its folders: v2 first (where `cgroup.kill` stops everything at once), then v1.
    fn dirs(&self) -> impl Iterator<Item = &PathBuf> {
        std::iter::once(&self.v2)
            .chain(&self.v1_memory)
            .chain(&self.v1_pids)
            .chain(&self.v1_cpu)
    }

    /// Whether the kernel killed a process of this cgroup for exceeding its memory limit.
    pub fn oom_killed(&self) -> bool {
        let v2 = fs::read_to_string(self.v2.join("memory.events"))
            .ok()
            .and_then(|t| field(&t, "oom_kill"))
            .unwrap_or(0);
        let v1 = self
            .v1_memory
            .as_ref()
            .and_then(|d| fs::read_to_string(d.join("memory.oom_control")).ok())
            .and_then(|t| field(&t, "oom_kill"))
            .unwrap_or(0);
        v2 + v1 > 0
    }

    /// Kills what runs in the cgroup and removes it.
    pub fn remove(&self) -> Result<()> {
        for dir in self.dirs() {
            if dir.exists() {
                remove_tree(dir)?;
            }
        }
        Ok(())
    }
}

/// The process's cgroup v2 path from `/proc/self/cgroup` text (the `0::PATH` line), relative
/// to the v2 mount (empty for the root).
fn own_v2_cgroup(text: &str) -> Option<PathBuf> {
    let path = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    Some(PathBuf::from(path.trim().trim_start_matches('/')))
}

/// Whether systemd delegated the cgroup `dir` (`trusted.delegate` or `user.delegate` = 1;
/// reading `trusted.*` takes CAP_SYS_ADMIN, which the agent's unit does not grant, so the
/// agent under systemd reads `user.delegate`, set by systemd 252 and later).
fn is_delegated(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt as _;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    [c"trusted.delegate", c"user.delegate"].iter().any(|name| {
        let mut value = [0u8; 8];
        // SAFETY: both strings are NUL-terminated and the buffer's length is passed.
        let n = unsafe {
            libc::getxattr(
                path.as_ptr(),
                name.as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        n > 0 && value[..n as usize] == *b"1"
    })
}

fn field(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == name).then(|| v.trim().parse().ok()).flatten()
    })
}

fn write_file(path: &Path, value: &str) -> Result<()> {
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .with_context(|| format!("writing `{value}` to {}", path.display()))
}

/// Kills the processes of `dir` and its descendants, then removes the folders bottom-up.
fn remove_tree(dir: &Path) -> Result<usize> {
    let mut removed = 0;
    for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            removed += remove_tree(&entry.path())?;
        }
    }
    kill_all(dir);
    // A killed process leaves its cgroup a moment later; rmdir fails with EBUSY until then.
    let mut tries = 0;
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(removed + 1),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && tries < 100 => {
                tries += 1;
                kill_all(dir);
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e).with_context(|| format!("removing cgroup {}", dir.display())),
        }
    }
}

fn kill_all(dir: &Path) {
    if fs::write(dir.join("cgroup.kill"), "1").is_ok() {
        return;
    }
    if let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) {
        for pid in procs.lines().filter_map(|p| p.trim().parse::<i32>().ok()) {
            // SAFETY: plain syscall on a pid read from the cgroup.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

#[cfg(test)]
mod tests;
