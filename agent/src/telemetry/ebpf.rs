//! Loads the embedded eBPF programs, attaches them to their tracepoints and hands out the
//! maps: the cgroup filter (written by the runtime), the per-CPU accept counters, the stats
//! array and the lifecycle ring buffer.
//!
//! Before loading, it makes the host ready as far as it can (mounts tracefs when missing,
//! lifts `RLIMIT_MEMLOCK` or warns that it could not), and when the kernel refuses, the error
//! names the missing capability or kernel feature.

use std::{
    fs,
    os::fd::OwnedFd,
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Context as _, Result, anyhow};
use aya::{
    Ebpf, EbpfLoader,
    maps::{HashMap, MapData, PerCpuArray, RingBuf},
    programs::TracePoint,
};
use synapse_agent_ebpf::{
    CgroupEntry, MAP_ACCEPTS, MAP_EVENTS, MAP_FILTER, MAP_STATS, PROGRAMS, STAT_RINGBUF_LOST,
};
use tracing::{info, warn};

/// The eBPF object built by `build.rs`.
static PROGRAM_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/synapse-programs"));

const TRACEFS: &str = "/sys/kernel/tracing";

/// Loaded and attached programs with their maps.
pub struct KernelProbes {
    ebpf: Ebpf,
    filter: Filter,
    accepts: PerCpuArray<MapData, u64>,
    stats: PerCpuArray<MapData, u64>,
    ring: Option<RingBuf<MapData>>,
    /// Keeps the kernel's run-time statistics on while held.
    _stats_fd: Option<OwnedFd>,
}

/// Run-time statistics of one program, from the kernel (`bpf_stats_enabled`).
#[derive(Debug, Clone)]
pub struct ProgramStats {
    pub name: &'static str,
    pub runs: u64,
    pub run_time: Duration,
}

impl KernelProbes {
    /// Prepares the host, loads the programs and attaches every tracepoint.
    pub fn load(ring_buffer_bytes: u32, bpf_stats: bool) -> Result<Self> {
        ensure_tracefs()?;
        raise_memlock();
        let mut ebpf = EbpfLoader::new()
            .set_max_entries(MAP_EVENTS, ring_buffer_bytes)
            .load(PROGRAM_OBJECT)
            .map_err(|e| explain_load_error(anyhow!(e)))?;
        for (name, category, tracepoint) in PROGRAMS {
            let program: &mut TracePoint = ebpf
                .program_mut(name)
                .with_context(|| format!("program {name} missing from the eBPF object"))?
                .try_into()?;
            program
                .load()
                .map_err(|e| explain_load_error(anyhow!(e).context(format!("loading {name}"))))?;
            program.attach(category, tracepoint).with_context(|| {
                format!(
                    "attaching {name} to tracepoint {category}/{tracepoint} (is it in {TRACEFS}/events?)"
                )
            })?;
        }
        let stats_fd = if bpf_stats {
            match aya::sys::enable_stats(aya::sys::Stats::RunTime) {
                Ok(fd) => Some(fd),
                Err(e) => {
                    warn!("kernel BPF run-time statistics unavailable: {e}");
                    None
                }
            }
        } else {
            None
        };
        let filter = HashMap::try_from(take_map(&mut ebpf, MAP_FILTER)?)?;
        let accepts = PerCpuArray::try_from(take_map(&mut ebpf, MAP_ACCEPTS)?)?;
        let stats = PerCpuArray::try_from(take_map(&mut ebpf, MAP_STATS)?)?;
        let ring = RingBuf::try_from(take_map(&mut ebpf, MAP_EVENTS)?)?;
        info!(
            programs = PROGRAMS.len(),
            ring_buffer_bytes, "eBPF telemetry attached"
        );
        Ok(Self {
            ebpf,
            filter: Filter(Arc::new(Mutex::new(filter))),
            accepts,
            stats,
            ring: Some(ring),
            _stats_fd: stats_fd,
        })
    }

    /// The cgroup filter, shared with whoever starts instances.
    pub fn filter(&self) -> Filter {
        self.filter.clone()
    }

    /// The lifecycle ring buffer; it can be taken once.
    pub fn take_ring(&mut self) -> Option<RingBuf<MapData>> {
        self.ring.take()
    }

    /// Connections accepted so far by the instances of `function_id`, summed over CPUs.
    pub fn accepts(&self, function_id: u32) -> Result<u64> {
        Ok(self.accepts.get(&function_id, 0)?.iter().sum())
    }

    /// Lifecycle events the kernel could not put in the ring buffer (it was full).
    pub fn lost_events(&self) -> Result<u64> {
        Ok(self.stats.get(&STAT_RINGBUF_LOST, 0)?.iter().sum())
    }

    /// Run counts and run time of every program, when the kernel keeps them.
    pub fn program_stats(&self) -> Vec<ProgramStats> {
        PROGRAMS
            .iter()
            .filter_map(|(name, _, _)| {
                let info = self.ebpf.program(name)?.info().ok()?;
                Some(ProgramStats {
                    name,
                    runs: info.run_count(),
                    run_time: info.run_time(),
                })
            })
            .collect()
    }
}

fn take_map(ebpf: &mut Ebpf, name: &str) -> Result<aya::maps::Map> {
    ebpf.take_map(name)
        .with_context(|| format!("map {name} missing from the eBPF object"))
}

/// The map from cgroup id to function id that the programs filter on.
#[derive(Clone)]
pub struct Filter(Arc<Mutex<HashMap<MapData, u64, CgroupEntry>>>);

impl Filter {
    /// Counts the processes of cgroup `cgroup_id` as instances of `function_id` from now on.
    pub fn watch(&self, cgroup_id: u64, function_id: u32) -> Result<()> {
        let entry = CgroupEntry {
            function_id,
            ..Default::default()
        };
        self.lock()
            .insert(cgroup_id, entry, 0)
            .with_context(|| format!("registering cgroup {cgroup_id} with the eBPF filter"))
    }

    /// Stops counting a cgroup. Unknown cgroups are not an error.
    pub fn unwatch(&self, cgroup_id: u64) {
        let _ = self.lock().remove(&cgroup_id);
    }

    /// Kernel time of the cgroup's latest accepted connection, 0 when none.
    pub fn last_accept_ns(&self, cgroup_id: u64) -> Option<u64> {
        self.lock()
            .get(&cgroup_id, 0)
            .ok()
            .map(|e| e.last_accept_ns)
    }

    /// Forgets what the kernel saw in a cgroup, so a new instance in it starts afresh.
    pub fn reset(&self, cgroup_id: u64) {
        let mut map = self.lock();
        if let Ok(entry) = map.get(&cgroup_id, 0) {
            let fresh = CgroupEntry {
                function_id: entry.function_id,
                ..Default::default()
            };
            let _ = map.insert(cgroup_id, fresh, 0);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<MapData, u64, CgroupEntry>> {
        // A panic while holding the lock cannot leave the map itself inconsistent.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Mounts tracefs when it is not there: attaching tracepoints reads their ids from it.
fn ensure_tracefs() -> Result<()> {
    let mounts = fs::read_to_string("/proc/mounts").unwrap_or_default();
    let mounted = mounts.lines().any(|l| {
        let mut f = l.split_whitespace();
        let (_, point, fs_type) = (f.next(), f.next(), f.next());
        fs_type == Some("tracefs")
            || (fs_type == Some("debugfs") && point == Some("/sys/kernel/debug"))
    });
    if mounted && Path::new(TRACEFS).join("events").exists()
        || Path::new("/sys/kernel/debug/tracing/events").exists()
    {
        return Ok(());
    }
    warn!("tracefs is not mounted; mounting it at {TRACEFS}");
    let src = c"nodev";
    let target = c"/sys/kernel/tracing";
    let fstype = c"tracefs";
    // SAFETY: valid NUL-terminated strings, no data argument.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        return Err(anyhow!(
            "tracefs is not mounted and mounting it at {TRACEFS} failed: {err} \
             (the agent needs CAP_SYS_ADMIN for that, or mount it before: \
             `mount -t tracefs nodev {TRACEFS}`)"
        ));
    }
    info!("mounted tracefs at {TRACEFS}");
    Ok(())
}

/// Kernels from 5.11 account BPF memory to the cgroup and ignore `RLIMIT_MEMLOCK`; older ones
/// need it lifted. Failing to lift it is only worth a warning.
fn raise_memlock() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain syscall with a valid struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } != 0 {
        warn!(
            "could not raise RLIMIT_MEMLOCK ({}); fine on kernels >= 5.11, which do not need it",
            std::io::Error::last_os_error()
        );
    }
}

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Adds to a load error what the operator can do about it.
fn explain_load_error(err: anyhow::Error) -> anyhow::Error {
    let caps = fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0);
    let has = |cap: u32| caps & (1 << cap) != 0;
    let mut missing = Vec::new();
    if !has(CAP_SYS_ADMIN) {
        if !has(CAP_BPF) {
            missing.push("CAP_BPF");
        }
        if !has(CAP_PERFMON) {
            missing.push("CAP_PERFMON");
        }
    }
    let hint = if !missing.is_empty() {
        format!(
            "the agent lacks {} (run it as root or grant them, as the systemd unit does)",
            missing.join(" and ")
        )
    } else if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        "the kernel has no BTF (/sys/kernel/btf/vmlinux); it needs CONFIG_DEBUG_INFO_BTF".into()
    } else if fs::read_to_string("/proc/sys/kernel/unprivileged_bpf_disabled").is_err()
        && !Path::new("/sys/fs/bpf").exists()
    {
        "this kernel seems to lack the BPF syscall (CONFIG_BPF_SYSCALL)".into()
    } else {
        "the kernel refused the programs; the verifier log above says why".into()
    };
    err.context(format!("cannot load the eBPF telemetry: {hint}"))
}
