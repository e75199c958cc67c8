//! The event layout shared by the agent's eBPF programs and user space.
//!
//! Everything here is `#[repr(C)]` and plain data: the kernel side writes it into maps and the
//! ring buffer, the agent reads the same bytes. Built `no_std` so that the eBPF programs
//! (`src/main.rs`, target `bpfel-unknown-none`) and the agent (host target) use one definition.
#![no_std]

/// Most functions one agent tracks; the per-function counter array has this many slots.
pub const MAX_FUNCTIONS: u32 = 4096;
/// Most cgroups (function instances and watched cgroups) in the filter map.
pub const MAX_CGROUPS: u32 = 65_536;
/// Default size of the lifecycle ring buffer, in bytes (a power of two, page aligned).
pub const DEFAULT_RING_BYTES: u32 = 256 * 1024;

/// Names of the maps, as user space looks them up.
pub const MAP_FILTER: &str = "SYNAPSE_FILTER";
pub const MAP_ACCEPTS: &str = "SYNAPSE_ACCEPTS";
pub const MAP_STATS: &str = "SYNAPSE_STATS";
pub const MAP_EVENTS: &str = "SYNAPSE_EVENTS";

/// The programs and the tracepoints they attach to: (program, category, tracepoint).
pub const PROGRAMS: &[(&str, &str, &str)] = &[
    ("synapse_exec", "sched", "sched_process_exec"),
    ("synapse_exit", "sched", "sched_process_exit"),
    ("synapse_listen", "syscalls", "sys_exit_listen"),
    ("synapse_accept", "syscalls", "sys_exit_accept"),
    ("synapse_accept4", "syscalls", "sys_exit_accept4"),
];

/// [`CgroupEntry::flags`]: an exec was seen in this cgroup.
pub const FLAG_EXEC: u32 = 1;
/// [`CgroupEntry::flags`]: a `listen()` succeeded in this cgroup (the instance is ready).
pub const FLAG_READY: u32 = 2;
/// [`CgroupEntry::flags`]: an `accept()` returned a connection in this cgroup.
pub const FLAG_ACCEPTED: u32 = 4;

/// Value of the cgroup filter map, keyed by cgroup v2 id (the inode of the cgroup directory).
/// The agent writes `function_id` with everything else zero; the kernel fills in the rest.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CgroupEntry {
    pub function_id: u32,
    pub flags: u32,
    /// Kernel time (CLOCK_MONOTONIC, ns) of the first exec in the cgroup.
    pub exec_ns: u64,
    /// Kernel time of the latest accepted connection.
    pub last_accept_ns: u64,
}

/// Kinds of [`LifecycleEvent`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Exec = 1,
    Ready = 2,
    FirstAccept = 3,
    Exit = 4,
}

impl EventKind {
    pub fn from_u32(v: u32) -> Option<Self> {
        match v {
            1 => Some(Self::Exec),
            2 => Some(Self::Ready),
            3 => Some(Self::FirstAccept),
            4 => Some(Self::Exit),
            _ => None,
        }
    }
}

/// A rare event of an instance's life, sent through the ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LifecycleEvent {
    pub kind: u32,
    pub function_id: u32,
    pub tgid: u32,
    pub pid: u32,
    pub cgroup_id: u64,
    /// Kernel time of the event (CLOCK_MONOTONIC, ns).
    pub ts_ns: u64,
    /// Kernel time of the cgroup's first exec, so a ready or accept event carries its own
    /// cold-start latency even if the exec event was missed.
    pub exec_ns: u64,
}

/// Slots of the per-CPU stats array.
pub const STAT_RINGBUF_LOST: u32 = 0;
pub const STAT_LEN: u32 = 1;

#[cfg(feature = "user")]
mod user {
    // SAFETY: both are `#[repr(C)]`, `Copy`, and every bit pattern is valid.
    unsafe impl aya::Pod for super::CgroupEntry {}
    unsafe impl aya::Pod for super::LifecycleEvent {}
}
